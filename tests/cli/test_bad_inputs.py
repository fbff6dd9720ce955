"""Every bad input in tests/cli/bad_inputs/ — a malformed experiments file, a broken or foreign store, a
planted link or pickle, a damaged checkpoint or data file — is refused through the CLI the way a user
meets it: a non-zero exit, no traceback, a message that says what and where, and the store as it was.

Each case is one file. Its lines after the `# --- bad input` marker say how to run it:
  # altui: ARGS        the command line ({db} the store, {store} its folder, {file} this file, {dir} a
                       scratch folder that also replaces {dir} in the file itself)
  # expect: TEXT       one or more: each must be in the output
  # setup: NAMES       what the case needs first (SETUPS below); default `store`
  # store: run-failed  the case starts a run, which is recorded as failed with the message: the rest
                       of the store must be as it was
  # absent: PATH       must not exist afterwards (what a planted pickle would have created)
  # intact: PATH       a file the case plants (a link target) must keep its content
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shlex
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from altui.al.presets import resolve
from altui.cli import app
from altui.store import Store

CASES = Path(__file__).resolve().parent / "bad_inputs"
MARK = "# --- bad input"
VICTIM = b"a file that a planted link points to\n"
# what a run that starts and fails changes: its end, and the provenance its process recorded as it started
RUN_END = ("status", "attempt", "error", "device", "pid", "heartbeat_at", "started_at", "finished_at",
           *Store.PROVENANCE)


class Case:
    def __init__(self, path: Path):
        self.name = path.stem
        self.text = path.read_text()
        meta: dict[str, list[str]] = {}
        for line in self.text.split(MARK, 1)[1].splitlines()[1:]:
            key, _, value = line.removeprefix("# ").partition(": ")
            meta.setdefault(key, []).append(value)
        self.args = meta["altui"][0]
        self.expect = meta["expect"]
        self.setup = (meta.get("setup") or ["store"])[0].split()
        self.run_failed = meta.get("store") == ["run-failed"]
        self.absent = meta.get("absent", [])
        self.intact = meta.get("intact", [])


def case_files() -> list[Path]:
    return sorted(CASES.glob("*.toml"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one queued run and a setting: what "as it was" is compared against."""
    db = tmp_path_factory.mktemp("baseline") / "altui.db"
    config = resolve("Random", dict(dataset="digits", model="cnn5", rounds=1, initial=10, budget=10, epochs=1))
    with Store(db) as store:
        store.enqueue("base", "base.toml", {"name": "base"}, [
            {"name": "base/Random/s0", "method": "Random", "seed": 0, "config": config.to_dict()}])
        store.set_paused(False)
    return db


# ---- setups ---------------------------------------------------------------------------------------


class Scene:
    """One case's world: paths, and what the setups put there."""

    def __init__(self, tmp: Path, case: Case, baseline: Path, stack: contextlib.ExitStack):
        self.case, self.baseline, self.stack = case, baseline, stack
        self.dir = tmp / "data"
        self.dir.mkdir()
        self.store = tmp / "store"
        self.store.mkdir()
        self.db = self.store / "altui.db"
        self.file = tmp / f"{case.name}.toml"
        self.file.write_text(case.text.replace("{dir}", str(self.dir)))

    def fill(self, text: str) -> str:
        return (text.replace("{db}", str(self.db)).replace("{store}", str(self.store))
                .replace("{file}", str(self.file)).replace("{dir}", str(self.dir)))

    def altui(self, args: str) -> Any:
        return CliRunner().invoke(app, [self.fill(a) for a in shlex.split(args)])


def store(s: Scene) -> None:
    shutil.copy(s.baseline, s.db)


def queued(s: Scene) -> None:
    """The case's experiment is queued already (run 2), so that running it adds no run."""
    result = s.altui("--db {db} queue {file}")
    assert result.exit_code == 0, result.output


def add_round_0(s: Scene) -> None:
    """Run 2 (the case's) has recorded round 0, as a run killed in round 1 has."""
    with Store(s.db) as st:
        st.add_round(2, dict(round=0, n_labeled=10, accuracy=0.5, test_loss=1.0, weight_decay=0.01, lr=0.01,
                             effective_channels=200, total_channels=224, conv_l2=3.0, train_seconds=1.0,
                             acquire_seconds=0.1, pick_mean_score=None, pick_class_counts="[]", gamma_bins="[0, 1]",
                             gamma_counts="[224]"), [], [])


def checkpoint_garbage(s: Scene) -> None:
    add_round_0(s)
    (s.store / "2").mkdir()
    (s.store / "2" / "round-0.pt").write_bytes(os.urandom(3000))


def write_npz(s: Scene, **arrays: np.ndarray) -> Path:
    path = s.dir / "data.npz"
    np.savez(path, **arrays)
    return path


def images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 12, 12), dtype=np.uint8)


def npz_truncated(s: Scene) -> None:
    path = write_npz(s, x=images(30), y=np.arange(30) % 3, x_test=images(6), y_test=np.arange(6) % 3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


class Planted:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def cifar_planted(s: Scene) -> None:
    folder = s.dir / "evil" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": Planted(s.dir / "PWNED"), "labels": [0]}))


def link(s: Scene, name: str) -> None:
    (s.dir / "victim").write_bytes(VICTIM)
    (s.store / name).symlink_to(s.dir / "victim")


def read_only(s: Scene) -> None:
    """The store's folder cannot be written (root ignores modes: a read-only bind mount then)."""
    if os.geteuid() != 0:
        s.store.chmod(0o555)
        s.stack.callback(s.store.chmod, 0o755)
        return
    mounted = subprocess.run(["mount", "--bind", s.store, s.store], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root without mount rights, a folder cannot be made read-only: {mounted.stderr!r}")
    s.stack.callback(subprocess.run, ["umount", s.store], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", s.store], check=True)


def corrupt_runs_table(s: Scene) -> None:
    store(s)
    with sqlite3.connect(s.db) as con:
        page = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(s.db.read_bytes())
    data[(page - 1) * size: page * size] = b"\xa5" * size
    s.db.write_bytes(bytes(data))


def newer_store(s: Scene) -> None:
    store(s)
    with sqlite3.connect(s.db) as con:
        con.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                    "VALUES ('altui', 'm999_from_the_future', '2099-01-01')")
    con.close()


def foreign_sqlite(s: Scene) -> None:
    with sqlite3.connect(s.db) as con:
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    con.close()


SETUPS: dict[str, Callable[[Scene], None]] = {
    "none": lambda s: None,
    "store": store,
    "queued": queued,
    "not-sqlite": lambda s: s.db.write_text("hi\n"),
    "empty-file": lambda s: s.db.write_bytes(b""),
    "truncated-store": lambda s: s.db.write_bytes(s.baseline.read_bytes()[: s.baseline.stat().st_size // 2]),
    "corrupt-store": corrupt_runs_table,
    "db-is-folder": lambda s: (s.store.rmdir(), s.db.mkdir(parents=True)),
    "newer-store": newer_store,
    "foreign-sqlite": foreign_sqlite,
    "read-only-folder": read_only,
    "lock-link": lambda s: link(s, "worker.lock"),
    "log-link": lambda s: link(s, "worker.log"),
    "run-folder-link": lambda s: ((s.dir / "victim-folder").mkdir(),
                                  (s.store / "2").symlink_to(s.dir / "victim-folder")),
    "checkpoint-garbage": checkpoint_garbage,
    "checkpoint-deleted": add_round_0,
    "npz-truncated": npz_truncated,
    "npz-text": lambda s: (s.dir / "data.npz").write_text("x,y\n1,2\n"),
    "npz-huge-label": lambda s: write_npz(s, x=images(3), y=np.array([0, 1, 10**9]), x_test=images(2),
                                          y_test=np.array([0, 1])),
    "npz-test-only-class": lambda s: write_npz(s, x=images(6), y=np.arange(6) % 3, x_test=images(2),
                                               y_test=np.array([1, 7])),
    "cifar-planted": cifar_planted,
}


# ---- what "the store as it was" means -------------------------------------------------------------


def store_state(db: Path, run_failed: bool) -> Any:
    """Every row of every table; with `run_failed`, less what a failed run changes (its status,
    attempt, error and times, and its events). A file that is no readable store: its bytes."""
    if not db.exists():
        return "no store"
    if db.is_dir():
        return ("folder", sorted(p.name for p in db.iterdir()))
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            state = {}
            for table in tables:
                if run_failed and table == "events":
                    continue
                cur = con.execute(f"SELECT * FROM {table} ORDER BY rowid")
                columns = [c[0] for c in cur.description]
                keep = [i for i, c in enumerate(columns) if not (run_failed and table == "runs" and c in RUN_END)]
                state[table] = [tuple(row[i] for i in keep) for row in cur]
            return state
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return db.read_bytes()


@contextlib.contextmanager
def scene(tmp_path: Path, case: Case, baseline: Path) -> Iterator[Scene]:
    with contextlib.ExitStack() as stack:
        s = Scene(tmp_path, case, baseline, stack)
        for name in case.setup:
            SETUPS[name](s)
        yield s


@pytest.mark.parametrize("path", case_files(), ids=lambda p: p.stem)
def test_a_bad_input_is_refused_with_its_message_and_changes_nothing(path: Path, tmp_path: Path, baseline: Path):
    case = Case(path)
    with scene(tmp_path, case, baseline) as s:
        before = store_state(s.db, case.run_failed)

        result = s.altui(case.args)

        output = result.output
        assert result.exit_code != 0, output
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{type(result.exception).__name__}: {result.exception}\n{output}")
        assert "Traceback" not in output, output
        for text in case.expect:
            assert s.fill(text) in output, f"{s.fill(text)!r} not in:\n{output}"
        assert store_state(s.db, case.run_failed) == before, "the store changed"
        if case.run_failed:
            with Store(s.db, create=False) as st:
                failed = [r for r in st.runs() if r["status"] == "failed"]
            assert len(failed) == 1 and "Traceback" not in failed[0]["error"], failed
        for absent in case.absent:
            assert not Path(s.fill(absent)).exists(), f"{s.fill(absent)} exists"
        for intact in case.intact:
            assert Path(s.fill(intact)).read_bytes() == VICTIM
