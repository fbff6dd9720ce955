"""A question before anything that queues, cancels or retries: what will happen, to which runs."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

MAX_LISTED = 12


def listing(lines: list[str], limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` lines, and how many more there are."""
    if len(lines) <= limit:
        return lines
    return [*lines[: limit - 1], f"… and {len(lines) - limit + 1} more"]


class ConfirmScreen(ModalScreen[bool]):
    """`question`, the `targets` it applies to (one a line), and a `note`; y/enter answers yes,
    n/escape no."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "yes", priority=True),
        Binding("n,escape", "answer(False)", "no", priority=True),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 90%; max-width: 100; height: auto; max-height: 90%;
        border: round $warning; padding: 0 1; background: $surface;
    }
    ConfirmScreen #question { text-style: bold; }
    ConfirmScreen VerticalScroll { height: auto; max-height: 12; }
    ConfirmScreen #note { color: $text-muted; }
    ConfirmScreen Horizontal { height: 1; align-horizontal: right; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, question: str, targets: list[str], note: str = "", yes: str = "yes") -> None:
        super().__init__()
        self.question, self.targets, self.note, self.yes = question, targets, note, yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question), id="question")
            with VerticalScroll():
                yield Static(Text("\n".join(listing(self.targets))), id="targets")
            if self.note:
                yield Static(Text(self.note), id="note")
            with Horizontal():
                yield Button(f"{self.yes} (y)", variant="warning", id="yes", compact=True)
                yield Button("no (n, esc)", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @property
    def text(self) -> str:
        """Everything the dialog says, as plain text (for tests and the palette's log)."""
        return "\n".join([self.question, *listing(self.targets), self.note])
