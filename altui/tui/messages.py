"""Messages between the dashboard's thread workers and its widgets."""

from __future__ import annotations

from textual.message import Message

from altui.tui.backend import Snapshot


class SnapshotReady(Message):
    """A poll read the store: everything the screens show comes from here."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class ActionDone(Message):
    """An action (queue, cancel, ...) finished; `text` says what it did."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class MarksChanged(Message):
    """Runs or experiments were marked or unmarked (space, *), or runs plotted or not (o)."""


class ViewChanged(Message):
    """The runs table's filter, sort or hidden runs changed: the dashboard keeps them in the store."""


class ViewLoaded(Message):
    """The runs table's view as the dashboard last left it in this store (filter, sort, hidden)."""

    def __init__(self, view: dict) -> None:
        super().__init__()
        self.view = view
