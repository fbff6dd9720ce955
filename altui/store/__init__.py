"""The SQLite store: the only module that speaks SQL. Its schema is a public interface (docs/schema.md).

WAL, a busy timeout on every connection, and short write transactions that take the write lock up
front (BEGIN IMMEDIATE), so that the runner, the worker and the dashboard never trip over each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from altui.files import make_dir

STATUSES = ("queued", "running", "done", "failed", "cancelled")
BUSY_TIMEOUT_MS = 30_000

migrations = Migrations("altui")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE experiments (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            file TEXT,
            spec_json TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            experiment_id INTEGER NOT NULL REFERENCES experiments(id),
            name TEXT NOT NULL UNIQUE,
            method TEXT NOT NULL,
            seed INTEGER NOT NULL,
            sweep_json TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            device TEXT,
            pid INTEGER,
            attempt INTEGER NOT NULL DEFAULT 0,
            heartbeat_at TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT,
            error TEXT,
            spec_json TEXT NOT NULL
        );
        CREATE INDEX runs_status ON runs(status, id);
        CREATE TABLE rounds (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            n_labeled INTEGER NOT NULL,
            accuracy REAL NOT NULL,
            test_loss REAL NOT NULL,
            weight_decay REAL NOT NULL,
            lr REAL NOT NULL,
            effective_channels INTEGER NOT NULL,
            total_channels INTEGER NOT NULL,
            conv_l2 REAL NOT NULL,
            train_seconds REAL NOT NULL,
            acquire_seconds REAL NOT NULL,
            pick_mean_score REAL,
            pick_class_counts TEXT NOT NULL,
            gamma_bins TEXT NOT NULL,
            gamma_counts TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            PRIMARY KEY (run_id, round)
        );
        CREATE TABLE epochs (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            train_loss REAL NOT NULL,
            train_accuracy REAL NOT NULL,
            lr REAL NOT NULL,
            images_per_second REAL NOT NULL,
            PRIMARY KEY (run_id, round, epoch)
        );
        CREATE TABLE channels (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            layer TEXT NOT NULL,
            channels INTEGER NOT NULL,
            effective INTEGER NOT NULL,
            PRIMARY KEY (run_id, round, layer)
        );
        CREATE TABLE picks (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            pool_index INTEGER NOT NULL,
            score REAL NOT NULL,
            PRIMARY KEY (run_id, round, pool_index)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            run_id INTEGER REFERENCES runs(id),
            at TEXT NOT NULL,
            level TEXT NOT NULL,
            message TEXT NOT NULL
        );
        CREATE INDEX events_run ON events(run_id, id);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


@migrations()
def m002_slurm(db: Database) -> None:
    """Runs that the Slurm executor runs carry their job id and the node it runs on."""
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN slurm_job_id TEXT;
        ALTER TABLE runs ADD COLUMN node TEXT;
        """
    )


@migrations()
def m003_gammas(db: Database) -> None:
    """Every batch-norm layer's |gamma| per round, so that any threshold or histogram (Figure 5)
    can be recomputed."""
    db.executescript(
        """
        CREATE TABLE gammas (
            run_id INTEGER NOT NULL REFERENCES runs(id),
            round INTEGER NOT NULL,
            layer TEXT NOT NULL,
            abs_gamma TEXT NOT NULL,
            PRIMARY KEY (run_id, round, layer)
        );
        """
    )


@migrations()
def m004_throughput(db: Database) -> None:
    """Short measurements of this machine's speed per device and workload (`altui estimate`)."""
    db.executescript(
        """
        CREATE TABLE throughput (
            device TEXT NOT NULL,
            model TEXT NOT NULL,
            input TEXT NOT NULL,
            batch INTEGER NOT NULL,
            compile INTEGER NOT NULL,
            augment INTEGER NOT NULL,
            slots INTEGER NOT NULL,
            kind TEXT NOT NULL,
            value REAL NOT NULL,
            torch_version TEXT NOT NULL,
            measured_at TEXT NOT NULL,
            PRIMARY KEY (device, model, input, batch, compile, augment, slots, kind)
        );
        """
    )


def _uri_path(path: Path) -> str:
    """A path as the path part of an SQLite file: URI (so that mode=ro and immutable=1 apply)."""
    from urllib.parse import quote

    return quote(str(path.absolute()), safe="/")


def now() -> str:
    """UTC timestamps as ISO 8601 text: readable in exports, and they sort as they compare."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class StoreError(RuntimeError):
    pass


def to_json(value: Any, what: str) -> str:
    """JSON text for a TEXT column. Never NaN or Infinity: SQLite's json_extract rejects them, and one
    such value would break every query over the column."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        raise StoreError(f"{what} holds a number that is not finite (inf or nan); allowed: finite "
                         "numbers") from None


EVENTS_FILE = "events.jsonl"  # a Slurm run's events, beside its checkpoints (altui/execution/events.py)


def checkpoint_file(run_dir: Path, round_: int) -> Path:
    """A round's checkpoint in its run's folder (a Slurm job, which has no store, finds it here too)."""
    return Path(run_dir) / f"round-{round_}.pt"


def store_error(path: str | Path, exc: sqlite3.Error) -> StoreError:
    """What an SQLite error on the store at `path` means for its user, in one line."""
    path = Path(path)
    code = getattr(exc, "sqlite_errorcode", None)
    base = code & 0xFF if code is not None else None
    text = str(exc)
    if base == sqlite3.SQLITE_NOTADB or "file is not a database" in text:
        why = f"{path} is not an altui store: it is not an SQLite database (give --db an altui store)"
    elif base == sqlite3.SQLITE_CORRUPT or "malformed" in text and "JSON" not in text:
        why = (f"the store {path} is damaged ({text}): restore it from a backup, or save what is "
               f"readable with `sqlite3 {path} .recover | sqlite3 recovered.db`")
    elif base == sqlite3.SQLITE_FULL:
        why = f"the disk holding the store {path} is full; free some space and try again"
    elif base in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        why = f"the store {path} cannot be written ({text}): check the permissions of it and of {path.parent}/"
    elif base == sqlite3.SQLITE_CANTOPEN:
        why = f"cannot open the store {path}: {_cannot_open(path)}"
    elif base in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        why = f"the store {path} stayed locked by another process for {BUSY_TIMEOUT_MS // 1000} s; try again"
    else:
        why = f"the store {path}: {text}"
    return StoreError(why)


def _cannot_open(path: Path) -> str:
    if path.is_dir():
        return "it is a folder; give --db a file, e.g. " + str(path / "altui.db")
    if not path.parent.is_dir():
        return f"its folder {path.parent}/ does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"its folder {path.parent}/ is read-only, and SQLite needs to create {path.name}-wal and "
                f"{path.name}-shm there")
    return "permission denied or an I/O error"


class Store:
    """A connection to one altui database; checkpoints live in run folders beside it.

    `create=False` opens an existing store only (read-only commands never create one): a missing
    or empty file is a StoreError, and a store whose folder is read-only is opened read-only.
    Every SQLite failure while opening is a StoreError that says what is wrong in one line.
    """

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        self.read_only = False
        if self.path.is_dir():
            raise StoreError(f"cannot open the store {self.path}: {_cannot_open(self.path)}")
        if not create and not self.path.exists():
            raise StoreError(f"no store at {self.path}: nothing was queued there yet "
                             "(`altui queue FILE` creates it; --db or ALTUI_DB chooses another)")
        if not create and self.path.stat().st_size == 0:
            raise StoreError(f"{self.path} is empty: not an altui store")
        if create:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the folder of the store {self.path}: {e.strerror}") from None
        try:
            self.db = self._connect(f"file:{_uri_path(self.path)}")
            try:
                self._prepare()
            except sqlite3.OperationalError as e:
                self.db.close()
                if create or getattr(e, "sqlite_errorcode", 0) & 0xFF not in (
                        sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
                    raise
                self._open_read_only()  # a read-only folder: reading still works
        except (sqlite3.Error, StoreError) as e:
            with contextlib.suppress(AttributeError, sqlite3.Error):
                self.db.close()
            if isinstance(e, StoreError):
                raise
            raise store_error(self.path, e) from None

    def _connect(self, uri: str) -> Database:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return Database(conn)

    def _prepare(self) -> None:
        self._check_version()
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        if migrations.pending(self.db):
            with self._write():
                migrations.apply(self.db)

    def _open_read_only(self) -> None:
        """Read a store whose folder cannot be written: read-only (the WAL index exists), else
        immutable (the last writer closed it cleanly, so there is no WAL to read)."""
        for mode in ("mode=ro", "immutable=1"):
            self.db = self._connect(f"file:{_uri_path(self.path)}?{mode}")
            try:
                self._check_version()
                self.db.execute("SELECT COUNT(*) FROM runs").fetchone()
                break
            except sqlite3.OperationalError:
                self.db.close()
                if mode == "immutable=1":
                    raise
        self.read_only = True
        pending = [m.name for m in migrations.pending(self.db)]
        if pending:
            raise StoreError(f"the store {self.path} needs an upgrade ({', '.join(pending)}) but "
                             f"its folder {self.path.parent}/ is read-only")

    def _check_version(self) -> None:
        """Refuse a file that is not an altui store, or one written by a newer altui."""
        tables = set(self.db.table_names())
        if not tables:
            return  # a new store
        if migrations.migrations_table not in tables or not migrations.applied(self.db):
            raise StoreError(f"{self.path} is an SQLite database but not an altui store (it has no altui "
                             "schema); give --db an altui store or a new file")
        known = {m.name for m in migrations._migrations}  # (sqlite-utils lists them nowhere public)
        unknown = [m.name for m in migrations.applied(self.db) if m.name not in known]
        if unknown:
            raise StoreError(f"the store {self.path} was written by a newer altui (schema changes "
                             f"{', '.join(unknown)} are unknown to this one); upgrade altui to open it")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Database]:
        """One short write transaction that holds the write lock from its start."""
        self.db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.conn.execute("ROLLBACK")
            raise
        self.db.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.conn.execute(sql, params).fetchall()]

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    def run_dir(self, run_id: int) -> Path:
        return self.path.parent / str(run_id)

    def checkpoint_path(self, run_id: int, round_: int) -> Path:
        return checkpoint_file(self.run_dir(run_id), round_)

    def make_run_dir(self, run_id: int) -> Path:
        """The run's folder, created if missing; a symbolic link planted there is refused."""
        return make_dir(self.run_dir(run_id))

    # ---- queueing ----------------------------------------------------------------------------

    def enqueue(self, experiment: str, file: str, spec: dict[str, Any], runs: list[dict[str, Any]]) -> list[int]:
        """Add an experiment and its runs (name, method, seed, sweep, config) in one transaction.

        Runs whose name is already in the store are left as they are: queueing twice adds nothing.
        Returns the ids of the runs added.
        """
        stamp = now()
        rows = [(r, to_json(r.get("sweep", {}), f"run {r['name']!r}: its sweep"),
                 to_json(r["config"], f"run {r['name']!r}: its settings")) for r in runs]
        spec_json = to_json(spec, f"experiment {experiment!r}")
        with self._write() as db:
            existing = {r["name"] for r in self._rows("SELECT name FROM runs")}
            new = [row for row in rows if row[0]["name"] not in existing]
            if not new:
                return []
            exp_id = db["experiments"].insert(
                {"name": experiment, "file": file, "spec_json": spec_json, "created_at": stamp}
            ).last_pk
            ids = []
            for r, sweep_json, config_json in new:
                ids.append(db["runs"].insert({
                    "experiment_id": exp_id, "name": r["name"], "method": r["method"], "seed": r["seed"],
                    "sweep_json": sweep_json, "status": "queued", "attempt": 0,
                    "created_at": stamp, "spec_json": config_json,
                }).last_pk)
            return ids

    def claim(self, device: str, run_id: int | None = None) -> dict[str, Any] | None:
        """Mark a queued run running on `device` and return it: `run_id`, or else the oldest queued
        one unless the queue is paused. None when there is no such run. A run pending in Slurm
        (queued with a slurm_job_id) is its job's, never claimed."""
        if run_id is None and self.paused():
            return None
        free = "status = 'queued' AND slurm_job_id IS NULL"
        pick = "?" if run_id is not None else f"(SELECT id FROM runs WHERE {free} ORDER BY id LIMIT 1)"
        with self._write():
            rows = self._rows(
                "UPDATE runs SET status = 'running', device = ?, attempt = attempt + 1, pid = NULL, "
                "started_at = COALESCE(started_at, ?), heartbeat_at = ?, finished_at = NULL "
                f"WHERE id = {pick} AND {free} RETURNING *",
                (device, now(), now(), *([run_id] if run_id is not None else [])),
            )
            if rows:  # the new attempt redoes the round that the last one left unfinished
                self._drop_unfinished_epochs(rows[0]["id"])
        return rows[0] if rows else None

    def _drop_unfinished_epochs(self, run_id: int) -> None:
        """Epoch rows of rounds after the last recorded one: an earlier attempt's, which the next
        attempt redoes from its first epoch (progress must not count them)."""
        self.db.conn.execute(
            "DELETE FROM epochs WHERE run_id = ? AND round > "
            "(SELECT COALESCE(MAX(round), -1) FROM rounds WHERE run_id = ?)", (run_id, run_id),
        )

    def set_pid(self, run_id: int, pid: int) -> None:
        with self._write():
            self.db.conn.execute("UPDATE runs SET pid = ?, heartbeat_at = ? WHERE id = ?", (pid, now(), run_id))

    def heartbeat(self, run_id: int) -> str:
        """Record that the run is alive; returns its status (the runner stops when it is cancelled)."""
        with self._write():
            self.db.conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now(), run_id))
            return self.db.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]

    def finish(self, run_id: int, status: str, error: str | None = None) -> str:
        """End a run (done, failed, cancelled) or send it back to the queue (queued); returns the
        run's status afterwards. A cancel is never overwritten: a run cancelled while it finished
        its last round, or while it failed, stays cancelled. An ended run keeps its Slurm job id and
        node; a requeued one loses them (its next job is another)."""
        if status not in STATUSES or status == "running":
            raise StoreError(f"cannot finish a run as {status!r}")
        requeue = status == "queued"
        with self._write():
            self.db.conn.execute(
                "UPDATE runs SET status = ?, error = ?, pid = NULL, finished_at = ?, "
                "slurm_job_id = CASE WHEN ? THEN NULL ELSE slurm_job_id END, "
                "node = CASE WHEN ? THEN NULL ELSE node END "
                "WHERE id = ? AND (status != 'cancelled' OR ? = 'cancelled')",
                (status, error, None if requeue else now(), requeue, requeue, run_id, status),
            )
            row = self.db.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row[0] if row else status

    def cancel(self, run_ids: Iterable[int]) -> list[int]:
        """Cancel queued or running runs; returns those changed. A running one's process is ended by
        the worker (or by its own heartbeat), which keeps its completed rounds."""
        return self._transition(run_ids, ("queued", "running"), "cancelled", finished=True)

    def select_runs(self, experiment: str | None = None, statuses: Iterable[str] | None = None) -> list[int]:
        """Ids of the runs of `experiment` (all experiments when None) whose status is one of
        `statuses` (any when None), in id order: the targets of bulk cancel and retry."""
        statuses = list(statuses or [])
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise StoreError(f"unknown status {unknown[0]!r}; allowed: {', '.join(STATUSES)}")
        where, params = [], []
        if experiment is not None:
            where.append("e.name = ?")
            params.append(experiment)
        if statuses:
            where.append(f"r.status IN ({','.join('?' * len(statuses))})")
            params += statuses
        sql = ("SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id "
               f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY r.id")
        return [row[0] for row in self.db.conn.execute(sql, params)]

    def retry(self, run_ids: Iterable[int]) -> list[int]:
        """Queue failed or cancelled runs again; they resume after their last completed round."""
        changed = self._transition(run_ids, ("failed", "cancelled"), "queued", finished=False)
        with self._write():
            for rid in changed:
                self.db.conn.execute("UPDATE runs SET attempt = 0, error = NULL, slurm_job_id = NULL, node = NULL "
                                     "WHERE id = ?", (rid,))
        return changed

    def restart(self, run_ids: Iterable[int]) -> list[int]:
        """Queue failed or cancelled runs again from round 0: delete their recorded rounds, epochs,
        channels, picks and gammas (and their checkpoints), keep their events. For a run whose
        checkpoint is gone or damaged, which can never resume. Returns the runs changed."""
        changed = []
        with self._write():
            for rid in run_ids:
                if not self.db.conn.execute("UPDATE runs SET status = 'queued', attempt = 0, error = NULL, "
                                            "finished_at = NULL, started_at = NULL, slurm_job_id = NULL, "
                                            "node = NULL WHERE id = ? AND status IN ('failed', 'cancelled')",
                                            (rid,)).rowcount:
                    continue
                for table in ("rounds", "epochs", "channels", "picks", "gammas"):
                    self.db.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (rid,))
                self.db["events"].insert({"run_id": rid, "at": now(), "level": "warning",
                                          "message": "restarted from scratch: its recorded rounds were deleted"})
                changed.append(rid)
        for rid in changed:  # after the commit: a crash in between leaves files that nothing reads
            for path in self.run_dir(rid).glob("round-*"):
                path.unlink(missing_ok=True)
            # a Slurm run's events file holds the deleted rounds: the head would ingest them again
            (self.run_dir(rid) / EVENTS_FILE).unlink(missing_ok=True)
        return changed

    def _transition(self, run_ids: Iterable[int], from_: tuple[str, ...], to: str, finished: bool) -> list[int]:
        changed = []
        marks = ",".join("?" * len(from_))
        with self._write():
            for rid in run_ids:
                cur = self.db.conn.execute(
                    f"UPDATE runs SET status = ?, finished_at = ? WHERE id = ? AND status IN ({marks})",
                    (to, now() if finished else None, rid, *from_),
                )
                if cur.rowcount:
                    changed.append(rid)
        return changed

    def release(self, run_id: int) -> None:
        """Send a running run back to the queue without counting the attempt: its worker is
        stopping, nothing went wrong with the run."""
        with self._write():
            self.db.conn.execute(
                "UPDATE runs SET status = 'queued', pid = NULL, attempt = MAX(attempt - 1, 0) "
                "WHERE id = ? AND status = 'running'", (run_id,),
            )

    # ---- Slurm jobs (the Slurm executor's head; docs/worker.md) ----------------------------------

    def slurm_submitted(self, run_id: int, job_id: str) -> None:
        """A claimed run's job is submitted: the run is queued again, pending in Slurm (slurm_job_id
        set, node NULL), until its job runs. A run cancelled meanwhile stays cancelled."""
        with self._write():
            self.db.conn.execute(
                "UPDATE runs SET slurm_job_id = ?, node = NULL, pid = NULL, "
                "status = CASE WHEN status = 'running' THEN 'queued' ELSE status END WHERE id = ?",
                (job_id, run_id),
            )

    def slurm_state(self, run_id: int, job_id: str, node: str | None) -> bool:
        """The run's job `job_id` runs on `node`, or is pending (node None: queued, pending in
        Slurm, as after a requeue). Only a queued or running run of that job changes; True if it did."""
        status = "queued" if node is None else "running"
        with self._write():
            cur = self.db.conn.execute(
                "UPDATE runs SET status = ?, node = ?, heartbeat_at = ? WHERE id = ? AND slurm_job_id = ? "
                "AND status IN ('queued', 'running') AND (status != ? OR node IS NOT ?)",
                (status, node, now(), run_id, job_id, status, node),
            )
            return cur.rowcount > 0

    def slurm_runs(self) -> list[dict[str, Any]]:
        """Runs that the Slurm executor's head must watch: queued or running with a job, and running
        ones claimed for Slurm (device 'slurm') whose job id is not recorded yet."""
        return self._rows(
            "SELECT id, name, status, attempt, device, slurm_job_id, node FROM runs "
            "WHERE (slurm_job_id IS NOT NULL AND status IN ('queued', 'running')) "
            "OR (status = 'running' AND device = 'slurm') ORDER BY id")

    def log_once(self, run_id: int, at: str, level: str, message: str) -> bool:
        """An event written elsewhere (a Slurm job's events file) at time `at`; a second copy of the
        same (run, at, message) is not added. True if it was added."""
        with self._write():
            cur = self.db.conn.execute(
                "INSERT INTO events (run_id, at, level, message) SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                "(SELECT 1 FROM events WHERE run_id = ? AND at = ? AND message = ?)",
                (run_id, at, level, message, run_id, at, message),
            )
            return cur.rowcount > 0

    def settings(self) -> dict[str, str]:
        """Queue and worker state (docs/schema.md lists the keys)."""
        return {r["key"]: r["value"] for r in self._rows("SELECT key, value FROM settings")}

    def set_settings(self, values: dict[str, str | None]) -> None:
        """Set keys; a value of None deletes its key."""
        with self._write():
            for key, value in values.items():
                if value is None:
                    self.db.conn.execute("DELETE FROM settings WHERE key = ?", (key,))
                else:
                    self.db.conn.execute(
                        "INSERT INTO settings (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value),
                    )

    def set_paused(self, paused: bool) -> None:
        self.set_settings({"queue_paused": "1" if paused else "0"})

    def paused(self) -> bool:
        """Whether no queued run starts: paused by the user, or by the worker for a full disk."""
        settings = self.settings()
        return settings.get("queue_paused") == "1" or "worker_disk_full" in settings

    def pause_reason(self) -> str | None:
        """Why the queue is paused, in words; None when it is not."""
        settings = self.settings()
        if "worker_disk_full" in settings:
            return settings["worker_disk_full"]
        return "paused by `altui pause`" if settings.get("queue_paused") == "1" else None

    # ---- results -----------------------------------------------------------------------------

    def add_epoch(self, run_id: int, row: dict[str, Any]) -> None:
        """One epoch's numbers. Epochs of a round arrive in order, so later epochs already there are
        an earlier attempt's (a round re-run after a crash): they go, and the round's progress is
        this attempt's."""
        with self._write() as db:
            self.db.conn.execute("DELETE FROM epochs WHERE run_id = ? AND round = ? AND epoch > ?",
                                 (run_id, row["round"], row["epoch"]))
            db["epochs"].upsert({"run_id": run_id, **row}, pk=("run_id", "round", "epoch"))

    def add_round(
        self, run_id: int, row: dict[str, Any], channels: list[dict[str, Any]], picks: list[dict[str, Any]],
        gammas: list[dict[str, Any]] = (),
    ) -> None:
        """A round's rows (rounds, channels, picks, gammas), all in one transaction. Recording a round
        twice is an error."""
        with self._write() as db:
            if self.db.conn.execute(
                "SELECT 1 FROM rounds WHERE run_id = ? AND round = ?", (run_id, row["round"])
            ).fetchone():
                raise StoreError(f"run {run_id} round {row['round']} is already recorded")
            db["rounds"].insert({"run_id": run_id, **row, "recorded_at": now()})
            db["channels"].insert_all({"run_id": run_id, "round": row["round"], **c} for c in channels)
            db["picks"].insert_all({"run_id": run_id, "round": row["round"], **p} for p in picks)
            db["gammas"].insert_all({"run_id": run_id, "round": row["round"], **g} for g in gammas)

    def log(self, run_id: int | None, message: str, level: str = "info") -> None:
        with self._write() as db:
            db["events"].insert({"run_id": run_id, "at": now(), "level": level, "message": message})

    # ---- reads -------------------------------------------------------------------------------

    def run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def resolve(self, refs: Iterable[str]) -> list[int]:
        """Run ids from ids or names; an unknown reference is an error that names it."""
        ids = []
        for ref in refs:
            row = self.db.conn.execute(
                "SELECT id FROM runs WHERE name = ? OR (CAST(id AS TEXT) = ?)", (ref, ref)
            ).fetchone()
            if row is None:
                raise StoreError(f"no run {ref!r} in {self.path} (give a run id or name; see `altui ls`)")
            ids.append(row[0])
        return ids

    def runs(self, status: str | None = None, experiment: str | None = None) -> list[dict[str, Any]]:
        """Runs with their progress: rounds done, planned rounds and epochs, the last round's numbers."""
        where, params = [], []
        if status:
            where.append("r.status = ?")
            params.append(status)
        if experiment:
            where.append("e.name = ?")
            params.append(experiment)
        sql = f"""
            SELECT r.*, e.name AS experiment,  -- json_valid: a store written before JSON was checked
                CASE WHEN json_valid(r.spec_json) THEN json_extract(r.spec_json, '$.rounds') END AS rounds_total,
                CASE WHEN json_valid(r.spec_json) THEN json_extract(r.spec_json, '$.epochs') END AS epochs_total,
                (SELECT COUNT(*) FROM rounds x WHERE x.run_id = r.id) AS rounds_done,
                l.n_labeled, l.accuracy, l.weight_decay, l.effective_channels, l.total_channels,
                (SELECT MAX(epoch) FROM epochs p WHERE p.run_id = r.id AND p.round =
                    (SELECT COUNT(*) FROM rounds x WHERE x.run_id = r.id)) AS epoch
            FROM runs r JOIN experiments e ON e.id = r.experiment_id
            LEFT JOIN rounds l ON l.run_id = r.id
                AND l.round = (SELECT MAX(round) FROM rounds y WHERE y.run_id = r.id)
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY r.id"""
        return self._rows(sql, params)

    def measured_throughput(self) -> dict[tuple[str, int], float]:
        """Training images per second per (model, batch size), over every epoch recorded here: total
        images over total seconds, so that long epochs weigh as much as they took."""
        rows = self._rows("""
            SELECT model, batch, SUM(n) AS images, SUM(n / ips) AS seconds FROM (
                SELECT json_extract(r.spec_json, '$.model') AS model,
                    json_extract(r.spec_json, '$.batch_size') AS batch,
                    json_extract(r.spec_json, '$.initial') + e.round * json_extract(r.spec_json, '$.budget') AS n,
                    e.images_per_second AS ips
                FROM epochs e JOIN runs r ON r.id = e.run_id WHERE e.images_per_second > 0)
            GROUP BY model, batch""")
        return {(r["model"], r["batch"]): r["images"] / r["seconds"] for r in rows if r["seconds"]}

    THROUGHPUT_KEY = ("device", "model", "input", "batch", "compile", "augment", "slots", "kind")

    def throughput(self, device: str | None = None, torch_version: str | None = None) -> list[dict[str, Any]]:
        """Cached measurements (`altui estimate`), of one device and torch version when given."""
        where, params = [], []
        for column, value in (("device", device), ("torch_version", torch_version)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return self._rows(f"SELECT * FROM throughput {'WHERE ' + ' AND '.join(where) if where else ''} "
                          "ORDER BY measured_at", params)

    def save_throughput(self, rows: list[dict[str, Any]]) -> None:
        """Store measurements; one of the same key replaces the earlier one."""
        with self._write() as db:
            db["throughput"].upsert_all(
                [{**r, "measured_at": r.get("measured_at") or now()} for r in rows], pk=self.THROUGHPUT_KEY)

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", (run_id,))

    def last_round(self, run_id: int) -> int:
        """The last recorded round of a run, -1 when none is."""
        row = self.db.conn.execute("SELECT MAX(round) FROM rounds WHERE run_id = ?", (run_id,)).fetchone()
        return -1 if row[0] is None else row[0]

    def epochs(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM epochs WHERE run_id = ? ORDER BY round, epoch", (run_id,))

    def channels(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM channels WHERE run_id = ? ORDER BY round, rowid", (run_id,))

    def picks(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM picks WHERE run_id = ? ORDER BY round, rowid", (run_id,))

    def gammas(self, run_id: int, layer: str | None = None) -> list[dict[str, Any]]:
        """|gamma| rows of a run (`abs_gamma` as JSON text), by round in network order; `layer`
        keeps one layer's."""
        if layer is None:
            return self._rows("SELECT * FROM gammas WHERE run_id = ? ORDER BY round, rowid", (run_id,))
        return self._rows("SELECT * FROM gammas WHERE run_id = ? AND layer = ? ORDER BY round",
                          (run_id, layer))

    def events(self, run_id: int | None = None, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Log lines after event id `after` (oldest first), of one run or of all."""
        if run_id is None:
            sql, params = "SELECT * FROM events WHERE id > ? ORDER BY id DESC LIMIT ?", (after, limit)
        else:
            sql = "SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id DESC LIMIT ?"
            params = (run_id, after, limit)
        return list(reversed(self._rows(sql, params)))

    # ---- report reads ------------------------------------------------------------------------

    EXPORT_TABLES = ("runs", "rounds", "epochs", "channels", "picks", "gammas")

    def export_columns(self, table: str) -> list[str]:
        """The columns of a raw table that `export_rows` yields, in schema order."""
        self._check_export_table(table)
        return [c.name for c in self.db[table].columns]

    def export_rows(self, table: str, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        """A raw table's rows, one at a time from the SQLite cursor (never the whole table in memory),
        in primary-key order; `experiment` keeps the rows of that experiment's runs."""
        self._check_export_table(table)
        order = {"runs": "t.id", "rounds": "t.run_id, t.round", "epochs": "t.run_id, t.round, t.epoch",
                 "channels": "t.run_id, t.round, t.rowid", "picks": "t.run_id, t.round, t.rowid",
                 "gammas": "t.run_id, t.round, t.rowid"}[table]
        run = "t" if table == "runs" else "r"
        join = "" if table == "runs" else "JOIN runs r ON r.id = t.run_id"
        where, params = ("WHERE e.name = ?", [experiment]) if experiment else ("", [])
        sql = (f"SELECT t.* FROM {table} t {join} JOIN experiments e ON e.id = {run}.experiment_id "
               f"{where} ORDER BY {order}")
        return self.db.query(sql, params)

    def _check_export_table(self, table: str) -> None:
        if table not in self.EXPORT_TABLES:  # the name goes into SQL text: only known tables
            raise StoreError(f"cannot export table {table!r}; allowed: {', '.join(self.EXPORT_TABLES)}")

    def result_rows(
        self, experiment: str | None = None, run_id: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Per-round numbers with their run's experiment, method, sweep point and seed, ordered by
        experiment, run and round: what the summary, plots and report aggregate."""
        where, params = [], []
        if experiment is not None:
            where.append("e.name = ?")
            params.append(experiment)
        if run_id is not None:
            where.append("r.id = ?")
            params.append(run_id)
        sql = f"""
            SELECT e.name AS experiment, r.id AS run_id, r.name AS run, r.method, r.sweep_json, r.seed,
                x.round, x.n_labeled, x.accuracy, x.weight_decay, x.effective_channels, x.total_channels
            FROM rounds x JOIN runs r ON r.id = x.run_id JOIN experiments e ON e.id = r.experiment_id
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY e.id, r.id, x.round"""
        return self.db.query(sql, params)

    def layer_rows(self, experiment: str, layer_by_model: dict[str, str]) -> list[dict[str, Any]]:
        """Per-round effective channels of one batch-norm layer per run: the layer that
        `layer_by_model` names for the run's model (runs of other models have none). Columns as
        `result_rows`' where they share a name, plus layer, channels, effective and model."""
        if not layer_by_model:
            return []
        model = "json_extract(r.spec_json, '$.model')"
        match = " OR ".join(f"({model} = ? AND c.layer = ?)" for _ in layer_by_model)
        params = [experiment, *(v for pair in layer_by_model.items() for v in pair)]
        return self._rows(f"""
            SELECT e.name AS experiment, r.id AS run_id, r.method, r.sweep_json, r.seed, x.round,
                x.n_labeled, c.layer, c.channels, c.effective, {model} AS model
            FROM channels c JOIN rounds x ON x.run_id = c.run_id AND x.round = c.round
            JOIN runs r ON r.id = c.run_id JOIN experiments e ON e.id = r.experiment_id
            WHERE e.name = ? AND ({match})
            ORDER BY r.id, x.round""", params)

    def experiment(self, name: str) -> dict[str, Any] | None:
        """The latest `experiments` row of that name (queueing an edited experiment adds a row)."""
        rows = self._rows("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", (name,))
        return rows[0] if rows else None
