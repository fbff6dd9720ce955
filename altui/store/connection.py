"""The store's connection: opening (created, or read-only when its folder is), the version check,
write transactions, run folders, and what an SQLite error means in words; the clock (`now`) that
every write reads, in one place that tests can patch.

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
from typing import Any, TypeVar

from sqlite_utils import Database

from altui.files import fsync_dir, make_dir
from altui.store.schema import RUN_FOLDERS_MIGRATION, migrations

BUSY_TIMEOUT_MS = 30_000
READ_BUSY_MS = 1_000  # what read-only commands wait for a lock: another program's lock is said at once


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


def runs_folder(db: str | Path) -> Path:
    """The folder of a store's run folders: `<store file>-runs/` beside it (as SQLite's -wal), so that
    two stores in one folder never share a run's checkpoints."""
    db = Path(db).resolve()  # a link to the store and the store itself: one folder
    return db.parent / f"{db.name}-runs"


def run_folder(db: str | Path, run_id: int) -> Path:
    """A run's folder: its checkpoints, output.log, Slurm events file and job logs."""
    return runs_folder(db) / str(run_id)


def make_run_folder(db: str | Path, run_id: int) -> Path:
    """The run's folder, created if missing; a symbolic link planted there or at the runs folder is refused."""
    make_dir(runs_folder(db))
    return make_dir(run_folder(db, run_id))


EVENTS_FILE = "events.jsonl"  # a Slurm run's events, beside its checkpoints (altui/execution/events.py)


def checkpoint_file(run_dir: Path, round_: int) -> Path:
    """A round's checkpoint in its run's folder (a Slurm job, which has no store, finds it here too)."""
    return Path(run_dir) / f"round-{round_}.pt"


def partial_file(run_dir: Path) -> Path:
    """The round in progress, saved at the end of an epoch (a Slurm job whose round outlasts its limit)."""
    return Path(run_dir) / "round-partial.pt"


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
        why = f"store is locked by another program{lock_holders(path)}: {path}; try again when it has finished"
    else:
        why = f"the store {path}: {text}"
    return StoreError(why)


def lock_holders(path: Path) -> str:
    """" (pid 123 sqlite3)": the other processes holding a lock on the store's files, from
    /proc/locks (Linux); "" when none is known."""
    inodes = set()
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            inodes.add(file.stat().st_ino)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return ""
    pids = []
    for line in lines:
        fields = line.split()
        if len(fields) > 5 and fields[4].isdigit() and fields[5].rsplit(":", 1)[-1].isdigit() \
                and int(fields[5].rsplit(":", 1)[-1]) in inodes and int(fields[4]) != os.getpid():
            pids.append(int(fields[4]))
    names = []
    for pid in dict.fromkeys(pids):
        try:
            names.append(f"pid {pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
        except OSError:
            names.append(f"pid {pid}")
    return f" ({', '.join(names)})" if names else ""


def _cannot_open(path: Path) -> str:
    if path.is_dir():
        return "it is a folder; give --db a file, e.g. " + str(path / "altui.db")
    if not path.parent.is_dir():
        return f"its folder {path.parent}/ does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"its folder {path.parent}/ is read-only, and SQLite needs to create {path.name}-wal and "
                f"{path.name}-shm there")
    return "permission denied or an I/O error"


_S = TypeVar("_S", bound="StoreBase")


class StoreBase:
    """A connection to one altui database; checkpoints live in run folders beside it.

    `create=False` opens an existing store only (read-only commands never create one): a missing
    or empty file is a StoreError, and a store whose folder is read-only is opened read-only.
    Every SQLite failure while opening is a StoreError that says what is wrong in one line.
    """

    def __init__(self, path: str | Path, create: bool = True, busy_ms: int = BUSY_TIMEOUT_MS):
        self.path = Path(path)
        self.busy_ms = busy_ms  # how long a statement waits for another's lock (READ_BUSY_MS: read-only commands)
        self.read_only = False
        self._depth = 0  # nesting of write transactions (_write)
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
        conn = sqlite3.connect(uri, uri=True, timeout=self.busy_ms / 1000, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {self.busy_ms}")
        return Database(conn)

    def _prepare(self) -> None:
        self._check_version()
        if self.db.journal_mode != "wal":
            self.db.enable_wal()
        # FULL: a commit is on disk when it returns, so that a file deleted after it (the previous
        # round's checkpoint) is never gone while a power loss rolls the commit back (NORMAL would)
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("PRAGMA foreign_keys = ON")
        pending = {m.name for m in migrations.pending(self.db)}
        if pending:
            with self._write():
                if RUN_FOLDERS_MIGRATION in pending:
                    self._move_run_folders()  # first: a crash before the commit moves the rest next time
                migrations.apply(self.db)

    def _move_run_folders(self) -> None:
        """m007: the run folders of a store written before it, `<store folder>/<run id>/`, move to
        `<store file>-runs/<run id>/`, where resumes look for their checkpoints. A folder already
        moved, missing, or a link (never followed) stays as it is."""
        if "runs" not in self.db.table_names():
            return
        moved = False
        for (run_id,) in self.db.conn.execute("SELECT id FROM runs ORDER BY id"):
            old, new = self.path.parent / str(run_id), self.run_dir(run_id)
            if old.is_dir() and not old.is_symlink() and not new.exists():
                make_dir(new.parent)
                os.rename(old, new)
                moved = True
        if moved:
            fsync_dir(self.path.parent)
            fsync_dir(runs_folder(self.path))

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

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Database]:
        """One short write transaction that holds the write lock from its start. Inside another
        (`transaction`), it is part of that one: the outer one commits or rolls back all."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.conn.execute("COMMIT")

    def transaction(self) -> contextlib.AbstractContextManager[Database]:
        """Several writes as one transaction: all of them are stored, or none (a Slurm events batch)."""
        return self._write()

    def _rows(self, sql: str, params: Iterable[Any] | dict = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.conn.execute(sql, params).fetchall()]

    @property
    def schema_version(self) -> int:
        return len(migrations.applied(self.db))

    def run_dir(self, run_id: int) -> Path:
        return run_folder(self.path, run_id)

    def checkpoint_path(self, run_id: int, round_: int) -> Path:
        return checkpoint_file(self.run_dir(run_id), round_)

    def make_run_dir(self, run_id: int) -> Path:
        """The run's folder, created if missing; a symbolic link planted there is refused."""
        return make_run_folder(self.path, run_id)
