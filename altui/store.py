"""The SQLite store: the only module that speaks SQL. Its schema is a public interface (docs/schema.md).

WAL, a busy timeout on every connection, and short write transactions that take the write lock up
front (BEGIN IMMEDIATE), so that the runner, the worker and the dashboard never trip over each other.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

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


def now() -> str:
    """UTC timestamps as ISO 8601 text: readable in exports, and they sort as they compare."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class StoreError(RuntimeError):
    pass


class Store:
    """A connection to one altui database; checkpoints live in run folders beside it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db = Database(conn)
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute("PRAGMA foreign_keys = ON")
        if migrations.pending(self.db):
            with self._write():
                migrations.apply(self.db)

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
        return self.run_dir(run_id) / f"round-{round_}.pt"

    # ---- queueing ----------------------------------------------------------------------------

    def enqueue(self, experiment: str, file: str, spec: dict[str, Any], runs: list[dict[str, Any]]) -> list[int]:
        """Add an experiment and its runs (name, method, seed, sweep, config) in one transaction.

        Runs whose name is already in the store are left as they are: queueing twice adds nothing.
        Returns the ids of the runs added.
        """
        stamp = now()
        with self._write() as db:
            existing = {r["name"] for r in self._rows("SELECT name FROM runs")}
            new = [r for r in runs if r["name"] not in existing]
            if not new:
                return []
            exp_id = db["experiments"].insert(
                {"name": experiment, "file": file, "spec_json": json.dumps(spec), "created_at": stamp}
            ).last_pk
            ids = []
            for r in new:
                ids.append(db["runs"].insert({
                    "experiment_id": exp_id, "name": r["name"], "method": r["method"], "seed": r["seed"],
                    "sweep_json": json.dumps(r.get("sweep", {})), "status": "queued", "attempt": 0,
                    "created_at": stamp, "spec_json": json.dumps(r["config"]),
                }).last_pk)
            return ids

    def claim(self, device: str, run_id: int | None = None) -> dict[str, Any] | None:
        """Mark a queued run running on `device` and return it: `run_id`, or else the oldest queued
        one unless the queue is paused. None when there is no such run."""
        if run_id is None and self.paused():
            return None
        pick = "?" if run_id is not None else "(SELECT id FROM runs WHERE status = 'queued' ORDER BY id LIMIT 1)"
        with self._write():
            rows = self._rows(
                "UPDATE runs SET status = 'running', device = ?, attempt = attempt + 1, pid = NULL, "
                "started_at = COALESCE(started_at, ?), heartbeat_at = ?, finished_at = NULL "
                f"WHERE id = {pick} AND status = 'queued' RETURNING *",
                (device, now(), now(), *([run_id] if run_id is not None else [])),
            )
        return rows[0] if rows else None

    def set_pid(self, run_id: int, pid: int) -> None:
        with self._write():
            self.db.conn.execute("UPDATE runs SET pid = ?, heartbeat_at = ? WHERE id = ?", (pid, now(), run_id))

    def heartbeat(self, run_id: int) -> str:
        """Record that the run is alive; returns its status (the runner stops when it is cancelled)."""
        with self._write():
            self.db.conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now(), run_id))
            return self.db.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0]

    def finish(self, run_id: int, status: str, error: str | None = None) -> None:
        """End a run (done, failed, cancelled) or send it back to the queue (queued)."""
        if status not in STATUSES or status == "running":
            raise StoreError(f"cannot finish a run as {status!r}")
        with self._write():
            self.db.conn.execute(
                "UPDATE runs SET status = ?, error = ?, pid = NULL, finished_at = ? WHERE id = ?",
                (status, error, None if status == "queued" else now(), run_id),
            )

    def cancel(self, run_ids: Iterable[int]) -> list[int]:
        """Cancel queued or running runs; returns those changed. A running one's process is ended by
        the worker (or by its own heartbeat), which keeps its completed rounds."""
        return self._transition(run_ids, ("queued", "running"), "cancelled", finished=True)

    def retry(self, run_ids: Iterable[int]) -> list[int]:
        """Queue failed or cancelled runs again; they resume after their last completed round."""
        changed = self._transition(run_ids, ("failed", "cancelled"), "queued", finished=False)
        with self._write():
            for rid in changed:
                self.db.conn.execute("UPDATE runs SET attempt = 0, error = NULL WHERE id = ?", (rid,))
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
        return self.settings().get("queue_paused") == "1"

    # ---- results -----------------------------------------------------------------------------

    def add_epoch(self, run_id: int, row: dict[str, Any]) -> None:
        """One epoch's numbers; a round re-run after a crash overwrites its earlier epochs."""
        with self._write() as db:
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
            SELECT r.*, e.name AS experiment,
                json_extract(r.spec_json, '$.rounds') AS rounds_total,
                json_extract(r.spec_json, '$.epochs') AS epochs_total,
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

    def experiment(self, name: str) -> dict[str, Any] | None:
        """The latest `experiments` row of that name (queueing an edited experiment adds a row)."""
        rows = self._rows("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", (name,))
        return rows[0] if rows else None
