"""The header: a status line (store, queue, worker, run counts, the queue's ETA, clock, the last
error) and a context line (the highlighted run in full, and what the table's view hides or sorts)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from altui.tui.backend import Snapshot
from altui.tui.format import STATUS_STYLE, SYMBOLS, duration, epoch_bar, job_text, status_counts, status_text


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
    eta = snapshot.experiment_eta()
    return f"ETA {duration(eta)}" if eta is not None else "ETA ? (not measured yet)"


class StatusLine(Static):
    DEFAULT_CSS = "StatusLine { height: 1; background: $panel; padding: 0 1; }"

    def show(self, snapshot: Snapshot | None, title: str = "", error: str | None = None) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        if title:
            text.append(title, style="bold")
            text.append("  ")
        if error:
            text.append(f"⚠ {error}  ", style="bold red")
        if snapshot is not None:
            text.append("queue paused" if snapshot.paused else "queue on",
                        style="bold yellow" if snapshot.paused else "")
            text.append(" │ ")
            text.append(worker_text(snapshot.worker), style="" if snapshot.worker else "yellow")
            text.append(" │")
            for status, count in status_counts(snapshot.runs):
                text.append(f" {count}{SYMBOLS[status]}", style=STATUS_STYLE[status])
            text.append(" │ " + queue_eta_text(snapshot))
            text.append(" │ " + snapshot.taken_at.astimezone().strftime("%H:%M:%S"))
        else:
            text.append("reading the store…", style="dim")
        self.update(text)


def run_line(run: dict[str, Any] | None) -> Text:
    """The highlighted run in full: its name (the experiment's whole name in it), status, round,
    epochs, and a Slurm run's job and node."""
    if run is None:
        return Text("no run here yet: queue an experiment (a)", style="dim")
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"#{run['id']} {run['name']}", style="bold")
    text.append(f" · {status_text(run)} · round {run['rounds_done']}/{run.get('rounds_total') or '?'}")
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
        self.query_one("#context-run", Static).update(run_line(run))
        self.query_one("#context-view", Static).update(Text("  " + " · ".join(view), no_wrap=True) if view else "")
