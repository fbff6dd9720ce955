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
A case of a Slurm events file has, instead of `altui`:
  # head: events       the real Slurm head ingests run 1's events file ({events}; run 1 is Slurm job 7)
  # line: TEXT         one or more: the file's lines
and `expect` lines must be in `altui logs 1`: the head's warnings, said once each.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shlex
import shutil
import sqlite3
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from altui.al.presets import resolve
from altui.cli import app
from altui.execution.events import events_path
from altui.execution.executors.slurm.head import SlurmWorker
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
        self.args = meta.get("altui", [""])[0]
        self.head = meta.get("head", [""])[0]  # "events": the Slurm head reads the `line`s as run 1's events file
        self.lines = meta.get("line", [])
        self.expect = meta["expect"]
        self.setup = (meta.get("setup") or ["store"])[0].split()
        self.run_failed = meta.get("store") == ["run-failed"]
        self.absent = meta.get("absent", [])
        self.intact = meta.get("intact", [])


def case_files(head: bool = False) -> list[Path]:
    """The cases run through the CLI, or (`head`) through the Slurm head."""
    return [p for p in sorted(CASES.glob("*.toml")) if ("\n# head: " in p.read_text()) == head]


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

    @property
    def events(self) -> Path:
        with Store(self.db) as st:
            return events_path(st.run_dir(1))

    def fill(self, text: str) -> str:
        if "{events}" in text:
            text = text.replace("{events}", str(self.events))
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
    with Store(s.db) as st:
        st.make_run_dir(2)
        (st.run_dir(2) / "round-0.pt").write_bytes(os.urandom(3000))


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


def append(s: Scene, text: str) -> None:
    """More of the case's file, written by the setup: what is too big to keep in the repository."""
    with open(s.file, "a") as f:
        f.write(text)


def npz_huge_header(s: Scene) -> None:
    """An npz whose x header claims 2**20 x 2**20 images of one byte (1 TiB) over 100 bytes of data."""
    path = write_npz(s, x=images(3), y=np.arange(3), x_test=images(2), y_test=np.arange(2))
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (2**20, 2**20)})
    members["x.npy"] = header.getvalue() + bytes(100)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def png(path: Path, size: tuple[int, int] = (8, 8)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(path)


def image_folder(s: Scene) -> Path:
    """{dir}/img with train/ and test/, classes a and b, one 8x8 image each."""
    for split in ("train", "test"):
        for cls in ("a", "b"):
            png(s.dir / "img" / split / cls / "1.png")
    return s.dir / "img"


def png_bomb(s: Scene) -> None:
    """A PNG whose header says 10,000 x 10,000 pixels (PIL only warns, and decodes such a file for half a minute)."""
    path = image_folder(s) / "train" / "b" / "2.png"
    data = bytearray((path.parent / "1.png").read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", 10_000, 10_000)
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
    path.write_bytes(bytes(data))


def folder_loop(s: Scene) -> None:
    (image_folder(s) / "train" / "b" / "again").symlink_to(".", target_is_directory=True)


def mnist_label_200(s: Scene) -> None:
    """MNIST's four IDX files under {dir}/MNIST/raw, 10 images each, one training label of 200."""
    raw = s.dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.arange(10, dtype=np.uint8)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 10, 28, 28) + bytes(10 * 784))
        if prefix == "train":
            labels[3] = 200
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, 10) + labels.tobytes())


def locked(s: Scene) -> None:
    """Another program holds the store locked (exclusive locking mode, in a transaction) while the case runs."""
    store(s)
    con = sqlite3.connect(s.db, isolation_level=None)
    con.execute("PRAGMA locking_mode = EXCLUSIVE")
    con.execute("BEGIN EXCLUSIVE")
    con.execute("SELECT COUNT(*) FROM runs").fetchone()
    s.stack.callback(con.close)
    s.stack.callback(con.execute, "ROLLBACK")


BAD_EXPERIMENT = '[[experiment]]\nname = "e{}"\ndataset = "digits"\nmodel = "cnn5"\nmethods = ["Rand"]\n'


def slurm_run(s: Scene) -> None:
    """Run 1 is Slurm job 7, and its events file holds the case's lines."""
    with Store(s.db) as st:
        st.claim("slurm")
        st.slurm_submitted(1, "7")
        st.make_run_dir(1)
    s.events.write_text("".join(line + "\n" for line in s.case.lines))


def events_replaced(s: Scene, make: Callable[[Path], None]) -> None:
    s.events.unlink()
    make(s.events)


def events_link(s: Scene) -> None:
    (s.dir / "victim").write_bytes(VICTIM)
    events_replaced(s, lambda p: p.symlink_to(s.dir / "victim"))


def huge_and_deep(s: Scene) -> None:
    log = {"type": "log", "at": "2026-01-01T00:00:00", "job": "7", "level": "info", "message": "x" * 3_000_000}
    s.events.write_text(json.dumps(log) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")


def worker_lock_held(s: Scene) -> None:
    """A worker holds the store's lock (this process, as a worker whose store was deleted under it)."""
    import fcntl

    fd = os.open(s.store / "worker.lock", os.O_RDWR | os.O_CREAT)
    s.stack.callback(os.close, fd)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\nthe store {s.db} was deleted while this worker served it".encode())


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
    "run-folder-link": lambda s: ((s.dir / "victim-folder").mkdir(), (s.store / "altui.db-runs").mkdir(),
                                  (s.store / "altui.db-runs" / "2").symlink_to(s.dir / "victim-folder")),
    "runs-folder-link": lambda s: ((s.dir / "victim-folder").mkdir(),
                                   (s.store / "altui.db-runs").symlink_to(s.dir / "victim-folder")),
    "checkpoint-garbage": checkpoint_garbage,
    "checkpoint-deleted": add_round_0,
    "npz-truncated": npz_truncated,
    "npz-text": lambda s: (s.dir / "data.npz").write_text("x,y\n1,2\n"),
    "npz-huge-label": lambda s: write_npz(s, x=images(3), y=np.array([0, 1, 10**9]), x_test=images(2),
                                          y_test=np.array([0, 1])),
    "npz-test-only-class": lambda s: write_npz(s, x=images(6), y=np.arange(6) % 3, x_test=images(2),
                                               y_test=np.array([1, 7])),
    "cifar-planted": cifar_planted,
    # issue 23: files too big or too many problems
    "pad-2mb": lambda s: append(s, ("# padding" + " " * 90 + "\n") * 20_000),
    "many-bad-experiments": lambda s: append(s, "".join(BAD_EXPERIMENT.format(i) for i in range(1, 5000))),
    "locked": locked,
    # issue 23: data files
    "npz-huge-header": npz_huge_header,
    "png-bomb": png_bomb,
    "folder-loop": folder_loop,
    "mnist-label-200": mnist_label_200,
    "sweep-100k": lambda s: append(s, f"weight_decay = [{', '.join(str(i / 1e6) for i in range(1, 100_001))}]\n"),
    # issue 23: Slurm events files and the worker
    "slurm-run": slurm_run,
    "worker-lock-held": worker_lock_held,
    "events-fifo": lambda s: events_replaced(s, os.mkfifo),
    "events-folder": lambda s: events_replaced(s, Path.mkdir),
    "events-link": events_link,
    "events-huge-and-deep": huge_and_deep,
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
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1)  # locked: its bytes
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


def ingest_as_the_head(db: Path) -> None:
    """What the Slurm head does with run 1's events file: read it at three ticks, the last after the
    job ended; a FIFO must not hang it (SIGALRM fails the test instead)."""
    import signal

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("the head hangs on the events file")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with Store(db) as st:
            head = SlurmWorker(st, SimpleNamespace(options=SimpleNamespace(max_jobs=1)))  # type: ignore[arg-type]
            job = head.watch(1, "7")
            for final in (False, False, True):
                head.ingest(job, final)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("path", case_files(head=True), ids=lambda p: p.stem)
def test_a_bad_events_file_is_refused_by_the_slurm_head_and_changes_no_row(path: Path, tmp_path: Path,
                                                                          baseline: Path):
    case = Case(path)
    with scene(tmp_path, case, baseline) as s:
        before = store_state(s.db, False)

        ingest_as_the_head(s.db)

        after = store_state(s.db, False)
        new_events = after.pop("events")[len(before.pop("events")):]
        assert after == before, "the store changed beyond the head's warnings"
        assert all(e[3] in ("warning", "error") for e in new_events), new_events
        logs = s.altui("--db {db} logs 1").output
        assert "Traceback" not in logs and "\x1b" not in logs, logs
        for text in case.expect:
            assert logs.count(s.fill(text)) == 1, f"{s.fill(text)!r} not once in:\n{logs}"
        for intact in case.intact:
            assert Path(s.fill(intact)).read_bytes() == VICTIM
