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
        """`title` first, then the queue, the worker, the run counts, the ETA and the clock. Where the
        line is too narrow, parts give way in this order so that the counts, ETA and clock stay whole:
        the title when it is the store's `path` (to its name, then to nothing), the ETA's note (why
        there is none), the worker, the queue."""
        parts: dict[str, Text] = {}
        if snapshot is not None:
            parts["queue"] = Text("queue paused" if snapshot.paused else "queue on",
                                  style="bold yellow" if snapshot.paused else "")
            parts["worker"] = Text(worker_text(snapshot.worker), style="" if snapshot.worker else "yellow")
            counts = Text()
            for status, count in status_counts(snapshot.runs):
                counts.append(f" {count}{SYMBOLS[status]}", style=STATUS_STYLE[status])
                if status == "failed":
                    counts.append(" R:retry", style="red")
            parts["counts"] = counts[1:] if counts.plain else Text("no runs", style="dim")
            parts["eta"] = Text(queue_eta_text(snapshot))
            parts["clock"] = Text(snapshot.taken_at.astimezone().strftime("%H:%M:%S"))
        titles = [title, Path(title).name, ""] if path else [title]
        options = [(t, []) for t in titles[:-1]] + [(titles[-1], d) for d in ([], ["worker"], ["worker", "queue"])]
        room = self.size.width - 2 if self.size.width else None
        for name, dropped in options:
            kept = {k: v for k, v in parts.items() if k not in dropped}
            line = self._line(name, error, snapshot, kept)
            if room is None or line.cell_len <= room:
                break
            if "eta" in kept and "(" in kept["eta"].plain:  # "ETA ? (not measured yet)" gives way first
                kept["eta"] = Text(kept["eta"].plain.split(" (")[0])
                line = self._line(name, error, snapshot, kept)
                if line.cell_len <= room:
                    break
        self.update(line)

    @staticmethod
    def _line(title: str, error: str | None, snapshot: Snapshot | None, parts: dict[str, Text]) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if title:
            text.append(title, style="bold")
            text.append("  ")
        if error:
            text.append(f"⚠ {error}  ", style="bold red")
        if snapshot is None:
            text.append("reading the store…", style="dim")
        return text + Text(" │ ").join(parts.values())


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
