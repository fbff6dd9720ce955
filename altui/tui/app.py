"""The dashboard app: one factory (`create_app`) for the CLI and the tests.

The app only reads and queues: a poll in a thread worker reads the store (1 Hz) and posts a
snapshot; screens draw snapshots. Training happens in the worker's processes, so quitting the
dashboard never stops a run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from altui.tui.backend import Backend, Clock, Snapshot, utc_now
from altui.tui.format import failure_reason
from altui.tui.messages import ActionDone, SnapshotReady, ViewChanged, ViewLoaded
from altui.tui.screens.confirm import ConfirmScreen
from altui.tui.screens.keys import KeysScreen
from altui.tui.screens.main import MainScreen
from altui.tui.screens.run import RunScreen
from altui.tui.widgets.experiments import ExperimentsTable
from altui.tui.widgets.runs_table import RunsTable, kept, restored

POLL_SECONDS = 1.0


class AltuiApp(App[None]):
    CSS_PATH = "altui.tcss"
    TITLE = "altui"
    BINDINGS = [
        Binding("q", "quit", "quit", tooltip="quit the dashboard; the runs go on in the worker"),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True, tooltip="quit; the runs go on"),
        Binding("p", "toggle_pause", "pause", show=False,
                tooltip="pause or resume the queue (running runs go on)"),
        Binding("w", "start_worker", "worker", show=False, tooltip="start a worker for this store"),
        Binding("question_mark", "toggle_keys", "keys", tooltip="show or hide the keys of what has focus"),
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
        self.quit_notice = ""  # what the terminal says after quitting

    def get_default_screen(self) -> MainScreen:
        return MainScreen()

    def on_mount(self) -> None:
        self.load_view()
        self.poll_now()

    @work(thread=True, group="settings", exit_on_error=False)
    def load_view(self) -> None:
        self.post_message(ViewLoaded(self.backend.load_view()))

    @work(thread=True, group="settings", exit_on_error=False)
    def save_view(self, view: dict) -> None:
        self.backend.save_view(view)

    def on_view_loaded(self, message: ViewLoaded) -> None:
        table = self.screen_stack[0].query_one(RunsTable) if self.screen_stack else None
        if table is not None:
            table.set_view(**restored(message.view))

    def on_view_changed(self, message: ViewChanged) -> None:
        self.save_view(kept(self.screen_stack[0].query_one(RunsTable).view))

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
        if self.snapshot is not None:
            self.notify_failures(self.snapshot, message.snapshot)
        unchanged = message.snapshot.unchanged and self.snapshot is not None and self.error is None
        self.snapshot = message.snapshot
        self.error = None
        for screen in self.screen_stack:
            if not (isinstance(screen, (MainScreen, RunScreen)) and screen.is_mounted):
                continue
            try:
                if unchanged and isinstance(screen, MainScreen):
                    screen.show_status(message.snapshot)  # the clock and the worker; the runs are as they were
                elif not unchanged or isinstance(screen, RunScreen):
                    screen.apply(message.snapshot)
            except NoMatches:  # a poll that ends while the app closes finds its widgets gone
                if self.is_running and not self._exit:
                    raise

    def notify_failures(self, before: Snapshot, after: Snapshot) -> None:
        """A notification for each run that failed since the last poll, with why (three at most)."""
        was = {r["id"]: r["status"] for r in before.runs}
        failed = [r for r in after.runs if r["status"] == "failed" and was.get(r["id"], "failed") != "failed"]
        for run in failed[:3]:
            self.notify(f"#{run['id']} {run['name']}: {failure_reason(run)}\nR retries every failed run",
                        title="a run failed", severity="error", timeout=30)
        if len(failed) > 3:
            self.notify(f"and {len(failed) - 3} more runs failed (/failed shows them)", severity="error", timeout=30)

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
            if self._poll_again:  # asked for while this one ran: at once (a 0 s timer would divide by 0)
                self._poll_again = False
                self.call_later(self.poll_now)
            else:
                self._timer = self.set_timer(self.poll_seconds, self.poll_now)

    def redraw_status(self) -> None:
        if self.snapshot is not None and isinstance(self.screen, (MainScreen, RunScreen)):
            self.screen.apply(self.snapshot)

    # ---- actions: run off the UI thread (a write may wait for the store's lock) ---------------------

    @work(thread=True, group="actions", exit_on_error=False)
    def act(self, action: Callable[..., str], *args: object) -> None:
        self.post_message(ActionDone(action(*args)))

    def confirm(self, question: str, targets: list[str], note: str, yes: str, then: Callable[[], None]) -> None:
        """Ask first (ConfirmScreen); `then` runs on yes."""
        def answered(ok: bool | None) -> None:
            if ok:
                then()

        self.push_screen(ConfirmScreen(question, targets, note, yes), answered)

    def on_action_done(self, message: ActionDone) -> None:
        if message.text:
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

    def action_toggle_keys(self) -> None:
        """Every key, full screen: altui's own first (by where they work), then Textual's."""
        if isinstance(self.screen, KeysScreen):
            self.screen.dismiss()
            return
        owners = [RunScreen] if isinstance(self.screen, RunScreen) else [MainScreen, RunsTable, ExperimentsTable]
        self.push_screen(KeysScreen([*owners, AltuiApp]))

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """The palette's Screenshot: into the store's folder (Textual's default, ~/Downloads, is
        missing on most servers, where it fails)."""
        return super().deliver_screenshot(filename, path or str(self.backend.db.parent.resolve()), time_format)

    def action_export_summary(self) -> None:
        self.act(self.backend.export_summary, self.shown_experiment())

    def action_write_report(self) -> None:
        experiment = self.shown_experiment()
        if experiment is None:
            self.notify("a report is of one experiment: choose one in the pane (tab) or filter the table first",
                        severity="warning")
            return
        self.act(self.backend.write_report, experiment)

    def shown_experiment(self) -> str | None:
        """The experiment the main screen shows (pane, filter or cursor), or the run view's."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen) and screen.detail is not None:
                return screen.detail.run["experiment"]
            if isinstance(screen, MainScreen):
                return screen.compared_experiment()
        return None

    async def action_quit(self) -> None:
        """Quit; the worker's runs go on, and the terminal says so once the dashboard has gone."""
        self.quit_notice = quit_notice(self.snapshot)
        self.exit(message=self.quit_notice)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) offers every action of the screen's keys, and Textual's own."""
        seen = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if binding.system or not binding.description or (active.node, binding.action) in seen \
                    or not ours(active.node, binding) or binding.action.startswith("cursor_"):
                continue  # a table's cursor keys (and j/k) move, they are no actions
            seen.add((active.node, binding.action))
            title = binding.description[0].upper() + binding.description[1:]
            help_text = f"{self.get_key_display(binding)}: {binding.tooltip or binding.description}"
            yield SystemCommand(title, help_text, partial(self.run_action, binding.action, active.node),
                                discover=active.enabled)
        yield SystemCommand("Export summary (CSV)", "the shown experiment's summary table (mean and interval "
                            "over seeds) into the store's folder: exports/EXPERIMENT-summary.csv",
                            self.action_export_summary)
        yield SystemCommand("Report (Markdown)", "the shown experiment's reproduction report, figures beside it, "
                            "into the store's folder: reports/EXPERIMENT.md", self.action_write_report)
        yield from (c for c in super().get_system_commands(screen) if c.title not in ("Quit", "Keys"))


def ours(node: object, binding: Binding) -> bool:
    """Whether `binding` is one of altui's own (declared by a class of this package)."""
    return any(cls.__module__.startswith("altui.") and any(
        b.action == binding.action for b in getattr(cls, "BINDINGS", []) if isinstance(b, Binding))
        for cls in type(node).__mro__)


def quit_notice(snapshot: Snapshot | None) -> str:
    """What goes on after the dashboard closes: the worker's runs, or the runs that wait for one."""
    if snapshot is None:
        return "altui: the dashboard closed; `altui` opens it again"
    running = sum(r["status"] == "running" for r in snapshot.runs)
    queued = sum(r["status"] == "queued" for r in snapshot.runs)
    if snapshot.worker is not None:
        what = f"with {running} running and {queued} queued run(s)" if running or queued else "waiting for runs"
        return f"altui: the dashboard closed; the worker (pid {snapshot.worker.get('pid')}) goes on {what}. " \
               "`altui` opens the dashboard again."
    if queued:
        return f"altui: the dashboard closed; {queued} queued run(s) wait for a worker: `altui worker start`"
    return "altui: the dashboard closed; `altui` opens it again"


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
