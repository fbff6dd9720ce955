"""The one-line status bar: store, queue, worker, run counts, clock, and the last error."""

from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.widgets import Static

from altui.tui.backend import Snapshot

SYMBOLS = (("running", "▶", "green"), ("queued", "…", "default"), ("done", "✓", "default"),
           ("failed", "✗", "red"), ("cancelled", "⊘", "yellow"))


def worker_text(worker: dict | None) -> str:
    if worker is None:
        return "worker: none (w)"
    pid = worker.get("pid")
    return f"worker: pid {pid}" if pid else "worker: on"


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
            counts = Counter(r["status"] for r in snapshot.runs)
            text.append(" │")
            for status, symbol, style in SYMBOLS:
                if counts[status]:
                    text.append(f" {counts[status]}{symbol}", style=style)
            text.append(" │ " + snapshot.taken_at.astimezone().strftime("%H:%M:%S"))
        else:
            text.append("reading the store…", style="dim")
        self.update(text)
