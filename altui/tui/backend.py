"""What the dashboard knows of the world: reads of the store and of experiments.toml, and the few
actions it takes. No widgets here; the app calls these from thread workers.

Every call opens its own Store (so a thread never shares a connection) and closes it at once: a
dashboard never holds a read transaction open that would stop the WAL from being checkpointed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from altui.al.catalog import PAPER_LAYER
from altui.spec import SpecError, SpecFile, load_spec
from altui.speed.eta import Estimate, estimate, known_throughput, queue_finish
from altui.speed.plan import cached_estimate
from altui.store import Store

Clock = Callable[[], datetime]
THROUGHPUT_SECONDS = 10.0
# An unchanged store is read in full again after this long (a safety net: every change the dashboard
# shows moves Store.change_token). Not shorter: at 20,000 runs a full read redraws the whole table.
FULL_SECONDS = 300.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ExperimentInfo:
    name: str
    runs: int  # how many runs the experiment expands to


@dataclass(frozen=True)
class ExperimentsState:
    """experiments.toml as last read: its experiments, or why it cannot be used."""

    path: str
    version: tuple[int, int] | None  # (mtime_ns, size): a change means the file was edited
    experiments: tuple[ExperimentInfo, ...] = ()
    issues: tuple[str, ...] = ()  # "line 12: experiment[0].rounds: must be ..."


@dataclass(frozen=True)
class RunDetail:
    """What the run view shows of one run."""

    run: dict[str, Any]
    rounds: list[dict[str, Any]]
    channels: list[dict[str, Any]]
    events: list[dict[str, Any]]
    paper_layer: str | None = None  # the batch norm of the paper's Figure 5 for the run's model
    paper_gammas: list[dict[str, Any]] = field(default_factory=list)  # its `gammas` rows, by round


def worker_slots(worker: dict[str, Any] | None) -> int:
    """How many runs a worker (worker_status()) runs at once; one when none runs: what starting one
    gives."""
    return max(1, len((worker or {}).get("slots") or []))


@dataclass(frozen=True)
class Snapshot:
    runs: list[dict[str, Any]]  # Store.runs(): every run with its progress
    curves: dict[int, list[dict[str, Any]]]  # run id -> its rounds
    paused: bool
    worker: dict[str, Any] | None  # worker_status(); None when no worker serves the store
    experiments: ExperimentsState
    taken_at: datetime
    detail: RunDetail | None = None
    throughput: dict[tuple[str, int], float] = field(default_factory=dict)  # Store.measured_throughput()
    eta: dict[int, float | None] = field(default_factory=dict)  # estimate.queue_finish: queued and running runs
    unchanged: bool = False  # the last snapshot's data at a new time: nothing changed since (Backend.snapshot)

    @property
    def slots(self) -> int:
        return worker_slots(self.worker)

    def experiment_eta(self, experiment: str | None = None) -> float | None:
        """Seconds until the experiment's runs (all runs when None) are done; 0 when none waits,
        None when a time is not measured yet."""
        times = [self.eta.get(r["id"]) for r in self.runs if r["status"] in ("queued", "running")
                 and (experiment is None or r["experiment"] == experiment)]
        if not times:
            return 0.0
        return None if None in times else max(times)


@dataclass(frozen=True)
class QueuePlan:
    """What queueing experiments would add, for the confirmation: new runs and their estimate."""

    names: list[str]
    new: dict[str, int]  # experiment -> runs not in the store yet
    existing: int
    estimate: Estimate
    slots: int
    source: str = ""  # what the times come from, in words


def issue_text(issue: Any) -> str:
    where = f"line {issue.line}: " if issue.line else ""
    return f"{where}{issue.key}: {issue.message}" if issue.key else f"{where}{issue.message}"


class Backend:
    """The dashboard's only way to the store, experiments.toml and the worker."""

    def __init__(
        self, db: Path, experiments: Path, clock: Clock = utc_now, start_worker_on_queue: bool = True,
        incremental: bool = True,
    ):
        self.db = Path(db)
        self.experiments = Path(experiments)
        self.clock = clock
        self.start_worker_on_queue = start_worker_on_queue
        self.detail_run: int | None = None  # set by the UI; the run whose details a snapshot carries
        # Touched only by the polling thread (polls never overlap).
        self._spec_state: ExperimentsState | None = None
        self._curves: dict[int, tuple[int, list[dict[str, Any]]]] = {}
        self._layers: dict[int, tuple[int, str | None, list[dict[str, Any]], list[dict[str, Any]]]] = {}
        self._speed: tuple[float, dict[tuple[str, int], float]] | None = None
        self._last: tuple[tuple[Any, ...], float, Snapshot] | None = None  # (change token, when, snapshot)
        self.incremental = incremental  # False: read everything at every poll (the benchmark's baseline)

    # ---- reads -------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """What the dashboard shows. Read in full only when something changed since the last poll
        (Store.change_token, the experiments file, the worker, the run in view), and at least every
        FULL_SECONDS; otherwise the last snapshot at the new time, marked `unchanged`: an idle
        dashboard over 20,000 runs costs a query of ~10 ms a second, not a read of every run."""
        detail_id = self.detail_run
        experiments = self.read_experiments()
        worker = self.worker_status()
        with Store(self.db) as store:
            token = (store.change_token(), detail_id, experiments.version,
                     {k: v for k, v in (worker or {}).items() if k != "heartbeat"})
            last = self._last
            if (self.incremental and last is not None and last[0] == token
                    and time.monotonic() - last[1] < FULL_SECONDS):
                return replace(last[2], taken_at=self.clock(), worker=worker, unchanged=True)
            snap = self._read(store, detail_id, experiments, worker)
        self._last = (token, time.monotonic(), snap)
        return snap

    def _read(self, store: Store, detail_id: int | None, experiments: ExperimentsState,
              worker: dict[str, Any] | None) -> Snapshot:
        """Every run, its curve and the run in view: the full read."""
        runs = store.runs()
        curves = {r["id"]: self._rounds(store, r) for r in runs}
        paused = store.paused()
        row = next((r for r in runs if r["id"] == detail_id), None)
        detail = None if row is None else self._detail(store, row, curves[row["id"]])
        throughput = self._throughput(store)
        eta = queue_finish(runs, throughput, worker_slots(worker))
        return Snapshot(runs, curves, paused, worker, experiments, self.clock(), detail, throughput, eta)

    def _detail(self, store: Store, run: dict[str, Any], rounds: list[dict[str, Any]]) -> RunDetail:
        """The run view's rows; channels and |gamma| are read again only when a round is recorded
        (the same transaction writes them), the log at every poll."""
        cached = self._layers.get(run["id"])
        if cached is None or cached[0] != run["rounds_done"]:
            layer = PAPER_LAYER.get(json.loads(run["spec_json"]).get("model", ""))
            cached = (run["rounds_done"], layer, store.channels(run["id"]),
                      store.gammas(run["id"], layer) if layer else [])
            self._layers[run["id"]] = cached
        _, layer, channels, gammas = cached
        return RunDetail(run, rounds, channels, store.events(run["id"], limit=50), layer, gammas)

    def _throughput(self, store: Store) -> dict[tuple[str, int], float]:
        """known_throughput, read again every THROUGHPUT_SECONDS (it sums every epoch row)."""
        now = time.monotonic()
        if self._speed is None or now - self._speed[0] >= THROUGHPUT_SECONDS:
            self._speed = (now, known_throughput(store))
        return self._speed[1]

    def _rounds(self, store: Store, run: dict[str, Any]) -> list[dict[str, Any]]:
        """A run's rounds, read again only when it has recorded a new one (rounds never change)."""
        cached = self._curves.get(run["id"])
        if cached is None or cached[0] != run["rounds_done"]:
            cached = (run["rounds_done"], self._with_paper_layer(store, run, store.rounds(run["id"])))
            self._curves[run["id"]] = cached
        return cached[1]

    @staticmethod
    def _with_paper_layer(store: Store, run: dict[str, Any], rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each round with the paper layer's effective channels: claim 4 has that row too, and the
        compare line's verdict is `altui claims`' only with the whole family."""
        layer = PAPER_LAYER.get(json.loads(run["spec_json"]).get("model", "")) if rounds else None
        if layer is None:
            return rounds
        effective = {c["round"]: c["effective"] for c in store.channels(run["id"]) if c["layer"] == layer}
        return [{**r, "paper_layer": layer, "paper_layer_effective": effective.get(r["round"])} for r in rounds]

    def read_experiments(self) -> ExperimentsState:
        """experiments.toml, parsed again only when its mtime or size changed."""
        try:
            st = self.experiments.stat()
            version: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            version = None
        if self._spec_state is not None and self._spec_state.version == version:
            return self._spec_state
        path = str(self.experiments)
        if version is None:
            state = ExperimentsState(path, None, issues=(f"no {path} here: nothing to queue",))
        else:
            try:
                spec = load_spec(self.experiments)
                infos = tuple(ExperimentInfo(e.name, len(e.runs)) for e in spec.experiments)
                state = ExperimentsState(path, version, infos)
            except SpecError as e:
                state = ExperimentsState(path, version, issues=tuple(issue_text(i) for i in e.issues))
        self._spec_state = state
        return state

    def worker_status(self) -> dict[str, Any] | None:
        try:
            from altui.execution.daemon import worker_status
        except ImportError:  # the worker module is optional to the dashboard
            return None
        return worker_status(self.db)

    # ---- actions: each returns a line for the user ---------------------------------------------

    def plan_queue(self, names: list[str], snapshot: Snapshot) -> QueuePlan:
        """What queueing `names` adds (runs not in the store yet) and how long they take at the
        measured throughput on the worker's slots."""
        spec = load_spec(self.experiments)  # SpecError: the pane already lists the problems
        stored = {r["name"] for r in snapshot.runs}
        new: dict[str, int] = {}
        configs = []
        for name in names:
            fresh = [r for r in spec.get(name).runs if r.name not in stored]
            new[name] = len(fresh)
            configs += [r.config for r in fresh]
        existing = sum(len(spec.get(n).runs) for n in names) - len(configs)
        measured = self._cached_estimate(configs, snapshot.slots)
        if measured is not None:
            return QueuePlan(names, new, existing, measured, snapshot.slots, f"altui estimate, {measured.device}")
        return QueuePlan(names, new, existing, estimate(configs, snapshot.throughput, snapshot.slots),
                         snapshot.slots, "the throughput of earlier runs")

    def _cached_estimate(self, configs: list[Any], slots: int) -> Estimate | None:
        """`altui estimate`'s figure from the store's cache (whole runs: training, evaluation,
        acquisition, bookkeeping), when it has measured these runs' workloads; None otherwise."""
        try:
            with Store(self.db) as store:
                est = cached_estimate(store, configs, slots=slots) if configs else None
        except (OSError, ValueError):  # a user's npz that cannot be read for its shape
            return None
        return est if est is not None and est.wall_seconds is not None else None

    def queue(self, names: list[str]) -> str:
        if not names:
            return "no experiment to queue: highlight one in the experiments pane"
        spec = load_spec(self.experiments)
        added = existing = 0
        with Store(self.db) as store:
            for name in names:
                ids, known = enqueue(store, spec, name)
                added, existing = added + len(ids), existing + known
        text = f"queued {added} run(s) of {', '.join(names)}"
        if existing:
            text += f"; {existing} already in the store"
        if added and self.start_worker_on_queue and self.worker_status() is None:
            text += "; " + self.start_worker()
        return text

    def cancel(self, ids: list[int]) -> str:
        with Store(self.db) as store:
            done = store.cancel(ids)
        return f"cancelled {_ids(done)}" if done else "nothing to cancel: only queued or running runs can be"

    def retry(self, ids: list[int]) -> str:
        with Store(self.db) as store:
            done = store.retry(ids)
        if not done:
            return "nothing to retry: only failed or cancelled runs can be"
        return f"queued {_ids(done)} again"

    def set_paused(self, paused: bool) -> str:
        with Store(self.db) as store:
            store.set_paused(paused)
        return "queue paused: running runs go on, no new one starts" if paused else "queue resumed"

    def toggle_pause(self) -> str:
        with Store(self.db) as store:
            paused = store.paused()
        return self.set_paused(not paused)

    def start_worker(self) -> str:
        from altui.execution.daemon import start_worker

        if start_worker(self.db):
            return f"started a worker for {self.db}"
        return "a worker already serves this store"


def enqueue(store: Store, spec: SpecFile, name: str) -> tuple[list[int], int]:
    """Add one experiment's runs; returns the new run ids and how many were already there."""
    exp = spec.get(name)
    ids = store.enqueue(exp.name, spec.path, exp.table, exp.run_rows())
    return ids, len(exp.runs) - len(ids)


def _ids(ids: list[int]) -> str:
    return ("run " if len(ids) == 1 else "runs ") + ", ".join(f"#{i}" for i in ids)
