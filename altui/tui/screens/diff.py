"""Two marked runs side by side (`d`): what differs in their settings and provenance, and their
metrics per round, as `altui diff A B` prints them (altui.results.diff)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from altui.results.diff import RunDiff, diff_lines


class DiffScreen(ModalScreen[None]):
    """Full screen, scrollable; esc, d or q closes it. Laid out again for the terminal's width."""

    BINDINGS = [Binding("escape,d,q", "dismiss", "close", priority=True)]
    DEFAULT_CSS = """
    DiffScreen { background: $background 95%; }
    DiffScreen VerticalScroll { padding: 0 1; }
    """

    def __init__(self, diff: RunDiff) -> None:
        super().__init__()
        self.diff = diff

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="diff-text")

    def on_resize(self) -> None:
        width = max(40, self.size.width - 2)
        title = Text(f"#{self.diff.a.id} vs #{self.diff.b.id}  (esc, d or q closes; `altui diff` prints the same)",
                     style="bold")
        body = Text("\n".join(diff_lines(self.diff, width)), no_wrap=True, overflow="ellipsis")
        self.query_one("#diff-text", Static).update(Text("\n").join([title, Text(""), body]))
