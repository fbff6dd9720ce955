"""A run's events file: how a Slurm job reports to the head without ever opening the store.

On the compute node, `EventSink` appends one JSON object per line to `<run folder>/events.jsonl`,
beside the run's checkpoints: the job's start, log lines, epochs, rounds (with the rows that
records.py builds for the store: round_row, channel_rows, pick_rows, gamma_rows), the run's end, or
that Slurm stopped the job (`stopped`: its time limit, or a signal).
A round's checkpoint is written first; its line is then appended and fsynced, and only then is the
previous round's checkpoint removed, as the store's runner does. Lines are only ever appended.

On the head, `EventsReader` reads the complete lines written since its last commit and `ingest` puts
them into the store; only then does the head commit the reader's offset. Ingesting a line twice
changes nothing: epochs are upserted, a round already recorded is skipped, a log line is keyed by
(run, time, message). So a head that restarts (or was killed, or met a store error in the middle of
a batch) reads the lines again and loses and duplicates nothing. The file is untrusted input (written
on another machine, editable by whoever can write the run folder): the head reads only a regular file,
checks every line against its kind's schema (event_schema.py) before it writes anything of it, and
stores a batch in one transaction. Format: docs/worker.md.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from altui.execution.event_schema import MAX_LINE, Bad, parse_line, problem
from altui.files import make_dir, open_fd
from altui.store import EVENTS_FILE, Store, checkpoint_file, now, partial_file

if TYPE_CHECKING:  # the head imports this module too, and stays free of torch
    from collections.abc import Callable

    from altui.al.sink import EpochState, EpochStats, ResumeState, RoundResult

TAIL_CHUNK = 65536  # bytes read backwards at a time when trimming a cut last line
# An unreadable line is read again for this long before it is skipped: NFS clients cache a file's
# attributes (and so may show its new length before its bytes) for up to acregmax, 60 s by default.
TORN_SECONDS = 90.0
READ_MAX = 2 * MAX_LINE  # bytes read at a time: a huge file is ingested a part per tick


def events_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / EVENTS_FILE


# ---- the node's side ------------------------------------------------------------------------------


def trim_cut_line(path: Path) -> None:
    """Drop a last line without its newline: a job killed while writing it left it cut. The head
    never reads past the last newline, so it never saw that line."""
    fd = open_events(path)  # never through a link, never a FIFO
    if fd is None:
        return
    os.close(fd)
    with os.fdopen(open_fd(path, os.O_RDWR), "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - TAIL_CHUNK)
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == end and chunk.endswith(b"\n"):
                return
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            pos = start
        f.truncate(0)


class EventSink:
    """The loop's sink on a compute node: every event a line of `events.jsonl` (job `job_id`)."""

    def __init__(self, run_dir: str | Path, job_id: str | None, save_every: float | None = None,
                 run_id: int | None = None):
        """`save_every`: seconds between saves of a round in progress (at an epoch's end; None: never),
        so that a round longer than the job's time limit goes on in the next job. `run_id`: written
        in every line (the head refuses a line that names another run)."""
        self.run_dir, self.job_id, self.save_every = Path(run_dir), job_id, save_every
        self.run = {} if run_id is None else {"run": run_id}
        self.saved_at = time.monotonic()
        make_dir(self.run_dir)  # never through a planted link, as the local runner's folders
        self.path = events_path(self.run_dir)
        trim_cut_line(self.path)
        self.fd = open_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def write(self, kind: str, sync: bool = False, **fields: Any) -> None:
        """One line in one write(2) (O_APPEND: never interleaved with nor written over another);
        `sync` makes it durable before this returns."""
        line = json.dumps({"type": kind, "at": now(), "job": self.job_id, **self.run, **fields},
                          separators=(",", ":"))
        data = (line + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]
        if sync:
            os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:  # once: a second close could close a file opened since under the same number
            os.close(self.fd)
            self.fd = -1

    def start(self, node: str, restarts: int) -> None:
        """The job's first line: it runs on `node` (Slurm's `restarts`-th restart of the job)."""
        self.write("start", sync=True, node=node, restarts=restarts)
        self.log(f"Slurm job {self.job_id} started on {node}" + (f" (restart {restarts})" if restarts else ""))

    def end(self, status: str, error: str | None = None) -> None:
        self.write("end", sync=True, status=status, error=error)

    # the loop's Sink
    def log(self, message: str, level: str = "info") -> None:
        self.write("log", level=level, message=message)

    def started(self, provenance: dict[str, Any]) -> None:
        self.write("provenance", values=provenance)

    def epoch_done(self, stats: EpochStats) -> None:
        row = asdict(stats)
        del row["epochs"]
        self.write("epoch", row=row)

    def round_done(self, result: RoundResult, state: ResumeState) -> None:
        from altui.execution.records import (  # torch: on the node only
            channel_rows,
            gamma_rows,
            pick_rows,
            round_row,
            save_checkpoint,
            teacher_row,
        )

        save_checkpoint(state, checkpoint_file(self.run_dir, result.round))
        self.write("round", sync=True, row=round_row(result), channels=channel_rows(result),
                   picks=pick_rows(result), gammas=gamma_rows(result), teacher=teacher_row(result))
        checkpoint_file(self.run_dir, result.round - 1).unlink(missing_ok=True)
        partial_file(self.run_dir).unlink(missing_ok=True)
        self.saved_at = time.monotonic()

    def epoch_saved(self, capture: Callable[[], EpochState]) -> None:
        """The loop's offer at an epoch's end (loop.run's `on_epoch`): save the round in progress
        when `save_every` seconds have passed since the last save, then say so in a `saved` line (the
        head counts it as the job's progress)."""
        if self.save_every is None or time.monotonic() - self.saved_at < self.save_every:
            return
        from altui.execution.records import save_partial

        state = capture()
        save_partial(state, partial_file(self.run_dir))
        self.write("saved", sync=True, round=state.round, epoch=state.epochs_done)
        self.saved_at = time.monotonic()


def recorded_round(run_dir: str | Path) -> int:
    """The last round the events file records, -1 when none: where a job resumes."""
    last = -1
    for event in EventsReader(events_path(run_dir)).read(final=True):  # the node's own file: no tearing
        if event.get("type") == "round":
            last = max(last, event["row"]["round"])
    return last


# ---- the head's side ------------------------------------------------------------------------------


class EventsFileRefused(OSError):
    """The events file is not a regular file (a symbolic link, a FIFO, a folder, a device): the head
    reads nothing through it. Its message says which and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


def open_events(path: Path) -> int | None:
    """A read-only descriptor of the events file at `path`, None when there is none. Never through a
    symbolic link (O_NOFOLLOW: a link to a secret on the head would put its lines into the store),
    never blocking (O_NONBLOCK: a FIFO would hang the head), and only a regular file."""
    try:  # the run folder too: never through a link planted in its place
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _refused(path.parent, e) from None
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _refused(path, e) from None
    finally:
        os.close(folder)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise EventsFileRefused(errno.EINVAL, f"{path} is {what}, not a regular file; the head reads only a "
                                              "regular file there (remove it: the run's next job writes a new one)")
    return fd


def _refused(path: Path, e: OSError) -> EventsFileRefused:
    what = ("a symbolic link" if e.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink() else
            "not a folder" if e.errno == errno.ENOTDIR else f"unreadable ({e.strerror})")
    return EventsFileRefused(e.errno, f"{path} is {what}; the head reads only a regular file in a run "
                                      "folder (remove it: the run's next job writes a new one)")


class EventsReader:
    """Reads the complete lines appended to an events file since the last `commit`, each checked
    against the schema of its kind (event_schema.py) for run `run_id` of `rounds` planned rounds.

    `read` never moves the offset: the head calls `commit` once the events read are in the store, so a
    store that fails in the middle of a batch (a full disk, a write lock held past the busy timeout)
    leaves the batch to be read again; ingesting is idempotent. A line that ends in a newline but is
    not JSON is taken for a torn read (NFS can show a file's new length before its bytes): reading
    stops before it and tries it again, until it reads whole or TORN_SECONDS pass; only then, or on a
    `final` read once the job has ended, is it skipped as a "bad" event. A line that is JSON but no
    valid event, or longer than MAX_LINE, can never become one: it is a "bad" event at once."""

    def __init__(self, path: str | Path, run_id: int | None = None, rounds: int | None = None):
        self.path, self.offset, self.line = Path(path), 0, 0  # line: lines before the offset
        self.run_id, self.rounds = run_id, rounds
        self.read_to = self.read_to_line = 0  # where the last read ended: where `commit` moves to
        self.torn: tuple[int, float] | None = None  # an unreadable line's offset, since when (monotonic)

    def read(self, final: bool = False) -> list[dict[str, Any]]:
        """The events after the committed offset, oldest first; a line skipped as no event becomes
        {"type": "bad", "where": "FILE:LINE", "why", "text"}. EventsFileRefused: not a regular file."""
        fd = open_events(self.path)
        if fd is None:
            return []
        with os.fdopen(fd, "rb") as f:
            if os.fstat(fd).st_size < self.offset:  # a new file in its place: read it whole
                self.offset = self.line = 0
            f.seek(self.offset)
            data = f.read(READ_MAX)
            cut = data.rfind(b"\n") + 1
            long_end = self.long_line_end(f, len(data) - cut) if len(data) - cut > MAX_LINE else None
        events, pos, number = [], self.offset, self.line
        for line in data[:cut].splitlines(keepends=True):
            event = self.parse(line, pos, number + 1, final)
            if event is None:
                break  # read again next time, with what follows it
            events.append(event)
            pos, number = pos + len(line), number + 1
        else:
            if long_end is not None and pos == self.offset + cut:
                events.append(self.bad(number + 1, f"the line is longer than {MAX_LINE >> 20} MiB", data[cut:]))
                pos, number = pos + (len(data) - cut) + long_end, number + 1
        self.read_to, self.read_to_line = pos, number
        return events

    def long_line_end(self, f: Any, seen: int) -> int | None:
        """Bytes from the read's end to the newline after it (included), None before it is written:
        the end of a line over MAX_LINE, found without holding it."""
        extra = 0
        while chunk := f.read(TAIL_CHUNK * 16):
            newline = chunk.find(b"\n")
            if newline >= 0:
                return extra + newline + 1
            extra += len(chunk)
        return None

    def parse(self, line: bytes, pos: int, number: int, final: bool) -> dict[str, Any] | None:
        """The event on `line` (number `number`, at `pos`), a bad event, or None: torn, read it again."""
        if len(line) > MAX_LINE:
            return self.bad(number, f"the line is longer than {MAX_LINE >> 20} MiB", line)
        try:
            event = parse_line(line)
        except Bad as e:
            return self.bad(number, str(e), line)
        except ValueError:
            if not final and not self.torn_too_long(pos):
                return None
            return self.bad(number, "not JSON (nor a torn line that became whole)", line)
        why = problem(event, self.run_id, self.rounds)
        return event if why is None else self.bad(number, why, line)

    def bad(self, number: int, why: str, line: bytes) -> dict[str, Any]:
        return {"type": "bad", "where": f"{self.path}:{number}", "why": why,
                "text": line[:200].decode(errors="replace").rstrip("\n")}

    def torn_too_long(self, pos: int) -> bool:
        """Whether the unreadable line at `pos` has stayed so for TORN_SECONDS."""
        if self.torn is None or self.torn[0] != pos:
            self.torn = (pos, time.monotonic())
        return time.monotonic() - self.torn[1] >= TORN_SECONDS

    def commit(self) -> None:
        """The events of the last read are stored: the next read starts after them."""
        self.offset, self.line = self.read_to, self.read_to_line


@dataclass
class Ingested:
    """What a batch of events told the head besides the rows it wrote."""

    rounds: int = 0  # rounds newly recorded
    start: dict[str, Any] | None = None  # the last start event
    end: dict[str, Any] | None = None  # the last end event
    stopped: dict[str, Any] | None = None  # the last stopped event (Slurm stopped the job: time limit, signal)
    round_jobs: set[str] | None = None  # the jobs whose round or saved lines the batch holds (progress)
    bad: list[str] | None = None  # lines that were not events


def ingest(store: Store, run_id: int, events: list[dict[str, Any]]) -> Ingested:
    """Write events into the store, idempotently (see the module's doc), in one transaction: a batch
    goes in whole or not at all. Start and end events are returned for the head to judge: only it
    knows which job is the run's current one. Events come checked (EventsReader); a round that does not
    follow the last recorded one (one missing between) is skipped as bad."""
    got = Ingested()
    if not events:  # the head polls every job's file twice a second; most polls find nothing
        return got
    with store.transaction():
        last = store.last_round(run_id)
        for e in events:
            ingest_one(store, run_id, e, got, last)
            if e.get("type") == "round" and e["row"]["round"] == last + 1:
                last += 1
    return got


def ingest_one(store: Store, run_id: int, e: dict[str, Any], got: Ingested, last: int) -> None:
    kind = e.get("type")
    if kind == "log":
        store.log_once(run_id, e["at"], e["level"], e["message"])
    elif kind == "epoch":
        store.add_epoch(run_id, e["row"])
    elif kind == "round":
        got.round_jobs = {*(got.round_jobs or ()), e.get("job")}
        if e["row"]["round"] == last + 1:  # rounds come in order; an earlier one is recorded
            store.add_round(run_id, e["row"], e["channels"], e["picks"], e["gammas"], e.get("teacher"))
            got.rounds += 1
        elif e["row"]["round"] > last + 1:
            got.bad = [*(got.bad or []), f"round {e['row']['round']} skipped: the last recorded round is {last}"]
    elif kind == "provenance":
        for change in store.set_provenance(run_id, e["values"]):
            store.log_once(run_id, e["at"], "warning", f"this attempt runs differently from the last: {change}")
    elif kind == "start":
        got.start = e
    elif kind == "end":
        got.end = e
    elif kind == "stopped":
        got.stopped = e
    elif kind == "saved":  # part of a round, kept for the next job: progress, as a round is
        got.round_jobs = {*(got.round_jobs or ()), e.get("job")}
    else:
        got.bad = [*(got.bad or []), f"{e.get('where', 'a line')}: {e.get('why', 'not an event')}: "
                                     f"{e.get('text', repr(e)[:200])!r}"]
