"""The dashboard app: one factory (`create_app`) for the CLI and the tests.

The app only reads and queues: a poll in a thread worker reads the store (1 Hz) and posts a
snapshot; screens draw snapshots. Training happens in the worker's processes, so quitting the
dashboard never stops a run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from altui.tui.backend import Backend, Clock, Snapshot, utc_now
from altui.tui.messages import ActionDone, SnapshotReady
from altui.tui.screens.help import HelpScreen
from altui.tui.screens.main import MainScreen
from altui.tui.screens.run import RunScreen

POLL_SECONDS = 1.0


class AltuiApp(App[None]):
    CSS_PATH = "altui.tcss"
    TITLE = "altui"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("p", "toggle_pause", "pause"),
        Binding("w", "start_worker", "worker"),
        Binding("question_mark", "help", "help"),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(self, backend: Backend, poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__()
        self.backend = backend
        self.poll_seconds = poll_seconds
        self.snapshot: Snapshot | None = None
        self.error: str | None = None  # the last poll's failure, shown until a poll succeeds
        self._polling = False
        self._poll_again = False
        self._timer: Timer | None = None

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_mount(self) -> None:
        self.poll_now()

    # ---- polling: one at a time, the next one scheduled when the last one has finished ------------

    def poll_now(self) -> None:
        if self._polling:
            self._poll_again = True
            return
        if self._timer is not None:
            self._timer.stop()
        self._polling = True
        self._poll()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self) -> None:
        self.post_message(SnapshotReady(self.backend.snapshot()))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.error = None
        for screen in self.screen_stack:
            if isinstance(screen, (MainScreen, RunScreen)) and screen.is_mounted:
                screen.apply(message.snapshot)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            # A locked or broken store, a bad file: say so and keep going; never crash the dashboard.
            error = f"{type(event.worker.error).__name__}: {event.worker.error}"
            if event.worker.group == "poll":
                if error != self.error:
                    self.notify(error, title="cannot read the store", severity="error")
                self.error = error
                self.redraw_status()
            else:
                self.notify(error, title="action failed", severity="error")
        if event.worker.group == "poll" and event.state in (
            WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED
        ):
            self._polling = False
            delay = 0 if self._poll_again else self.poll_seconds
            self._poll_again = False
            self._timer = self.set_timer(delay, self.poll_now)

    def redraw_status(self) -> None:
        if self.snapshot is not None and isinstance(self.screen, (MainScreen, RunScreen)):
            self.screen.apply(self.snapshot)

    # ---- actions: run off the UI thread (a write may wait for the store's lock) ---------------------

    @work(thread=True, group="actions", exit_on_error=False)
    def act(self, action: Callable[..., str], *args: object) -> None:
        self.post_message(ActionDone(action(*args)))

    def on_action_done(self, message: ActionDone) -> None:
        self.notify(message.text)
        self.poll_now()

    def open_run(self, run_id: int) -> None:
        self.backend.detail_run = run_id
        self.push_screen(RunScreen(run_id))
        self.poll_now()

    def action_toggle_pause(self) -> None:
        self.act(self.backend.toggle_pause)

    def action_start_worker(self) -> None:
        self.act(self.backend.start_worker)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def create_app(
    db: Path,
    experiments: Path,
    *,
    now: Clock | None = None,
    poll_seconds: float = POLL_SECONDS,
    start_worker_on_queue: bool = True,
) -> AltuiApp:
    """The dashboard on a store and an experiments file. `now` fixes the clock (snapshot tests);
    `start_worker_on_queue` starts a worker when queueing finds none (the CLI's behaviour)."""
    backend = Backend(Path(db), Path(experiments), now or utc_now, start_worker_on_queue)
    return AltuiApp(backend, poll_seconds)


def require_terminal() -> None:
    """The dashboard needs a terminal; say what to use instead and exit 1."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("altui's dashboard needs a terminal (stdin and stdout are not one).\n"
              "Without one, list runs with `altui ls`.", file=sys.stderr)
        sys.exit(1)


def run_ui(db: Path, experiments: Path) -> None:
    require_terminal()
    create_app(db, experiments).run()
