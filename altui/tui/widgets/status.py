"""The header: a status line (store, queue, worker, run counts, the queue's ETA, clock, the last
error) and a context line (the highlighted run in full, and what the table's view hides or sorts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from altui.tui.backend import Snapshot
from altui.tui.format import (
    STATUS_STYLE,
    SYMBOLS,
    duration,
    epoch_bar,
    failure_reason,
    job_text,
    status_counts,
    status_text,
)


def worker_text(worker: dict | None) -> str:
    if worker is None:
        return "worker: none (w)"
    pid, slots = worker.get("pid"), len(worker.get("slots") or [])
    text = f"worker: pid {pid}" if pid else "worker: on"
    return text + (f", {slots} slots" if slots > 1 else "")


def queue_eta_text(snapshot: Snapshot) -> str:
    """The time until every queued and running run is done, at the measured throughput."""
    if not any(r["status"] in ("queued", "running") for r in snapshot.runs):
        return "queue empty"
    if snapshot.paused:  # nothing new starts: no time can be given
        return "ETA – (paused)"
    eta = snapshot.experiment_eta()
    return f"ETA {duration(eta)}" if eta is not None else "ETA ? (not measured yet)"


class StatusLine(Static):
    DEFAULT_CSS = "StatusLine { height: 1; background: $panel; padding: 0 1; }"

    def show(self, snapshot: Snapshot | None, title: str = "", error: str | None = None, *,
             path: bool = False) -> None:
        """`title` first; when it is the store's `path`, it gives way (to its name, then to nothing)
        where the line is too narrow, so that the counts and the clock stay."""
        body = Text(no_wrap=True, overflow="ellipsis")
        if error:
            body.append(f"⚠ {error}  ", style="bold red")
        if snapshot is not None:
            body.append("queue paused" if snapshot.paused else "queue on",
                        style="bold yellow" if snapshot.paused else "")
            body.append(" │ ")
            body.append(worker_text(snapshot.worker), style="" if snapshot.worker else "yellow")
            body.append(" │")
            for status, count in status_counts(snapshot.runs):
                body.append(f" {count}{SYMBOLS[status]}", style=STATUS_STYLE[status])
                if status == "failed":
                    body.append(" R:retry", style="red")
            body.append(" │ " + queue_eta_text(snapshot))
            body.append(" │ " + snapshot.taken_at.astimezone().strftime("%H:%M:%S"))
        else:
            body.append("reading the store…", style="dim")
        room = self.size.width - 2 if self.size.width and path else None
        for name in (title, Path(title).name, ""):
            if room is None or len(name) + 2 + body.cell_len <= room or not name:
                break
        text = Text(no_wrap=True, overflow="ellipsis")
        if name:
            text.append(name, style="bold")
            text.append("  ")
        self.update(text + body)


def run_line(run: dict[str, Any] | None) -> Text:
    """The highlighted run in full: its name (the experiment's whole name in it), status, round,
    epochs, and a Slurm run's job and node."""
    if run is None:
        return Text("no run here yet: queue an experiment (a)", style="dim")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"#{run['id']} {run['name']}", style="bold")
    reason = failure_reason(run)  # a failed run's reason before the rest: the line may be cut
    text.append(" · ")
    text.append(f"{status_text(run)}: {reason}" if reason else status_text(run), style="red" if reason else "")
    text.append(f" · round {run['rounds_done']}/{run.get('rounds_total') or '?'}")
    if run["status"] == "running" and run.get("epochs_total"):
        text.append(f" · epoch {epoch_bar(run.get('epoch'), run['epochs_total'])}")
    if job_text(run):
        text.append(f" · job {job_text(run)}")
    return text


class ContextLine(Horizontal):
    DEFAULT_CSS = """
    ContextLine { height: 1; padding: 0 1; }
    ContextLine #context-run { width: 1fr; }
    ContextLine #context-view { width: auto; color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="context-run")
        yield Static(id="context-view")

    def show(self, run: dict[str, Any] | None, view: list[str]) -> None:
        line = run_line(run)
        view_text = Text("  " + " · ".join(view), no_wrap=True, overflow="ellipsis") if view else Text()
        if failure_reason(run or {}) and self.size.width:  # why it failed comes before the view's notes
            room = max(0, self.size.width - 2 - line.cell_len)
            if room > 4:
                view_text.truncate(room, overflow="ellipsis")
            else:
                view_text = Text()
        self.query_one("#context-run", Static).update(line)
        self.query_one("#context-view", Static).update(view_text)
