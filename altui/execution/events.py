"""A run's events file: how a Slurm job reports to the head without ever opening the store.

On the compute node, `EventSink` appends one JSON object per line to `<run folder>/events.jsonl`,
beside the run's checkpoints: the job's start, log lines, epochs, rounds (with the rows that
records.py builds for the store: round_row, channel_rows, pick_rows, gamma_rows) and the run's end.
A round's checkpoint is written first; its line is then appended and fsynced, and only then is the
previous round's checkpoint removed, as the store's runner does. Lines are only ever appended.

On the head, `EventsReader` reads the complete lines written since its last read and `ingest` puts
them into the store. Ingesting a line twice changes nothing: epochs are upserted, a round already
recorded is skipped, a log line is keyed by (run, time, message). So a head that restarts (or was
killed) reads the file again from its start and loses and duplicates nothing. Format: docs/worker.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from altui.files import make_dir, open_fd
from altui.store import EVENTS_FILE, Store, checkpoint_file, now

if TYPE_CHECKING:  # the head imports this module too, and stays free of torch
    from altui.al.sink import EpochStats, ResumeState, RoundResult

TAIL_CHUNK = 65536  # bytes read backwards at a time when trimming a cut last line


def events_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / EVENTS_FILE


# ---- the node's side ------------------------------------------------------------------------------


def trim_cut_line(path: Path) -> None:
    """Drop a last line without its newline: a job killed while writing it left it cut. The head
    never reads past the last newline, so it never saw that line."""
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        return
    with f:
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

    def __init__(self, run_dir: str | Path, job_id: str | None):
        self.run_dir, self.job_id = Path(run_dir), job_id
        make_dir(self.run_dir)  # never through a planted link, as the local runner's folders
        self.path = events_path(self.run_dir)
        trim_cut_line(self.path)
        self.fd = open_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def write(self, kind: str, sync: bool = False, **fields: Any) -> None:
        """One line in one write(2) (O_APPEND: never interleaved with nor written over another);
        `sync` makes it durable before this returns."""
        line = json.dumps({"type": kind, "at": now(), "job": self.job_id, **fields}, separators=(",", ":"))
        data = (line + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]
        if sync:
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def start(self, node: str, restarts: int) -> None:
        """The job's first line: it runs on `node` (Slurm's `restarts`-th restart of the job)."""
        self.write("start", sync=True, node=node, restarts=restarts)
        self.log(f"Slurm job {self.job_id} started on {node}" + (f" (restart {restarts})" if restarts else ""))

    def end(self, status: str, error: str | None = None) -> None:
        self.write("end", sync=True, status=status, error=error)

    # the loop's Sink
    def log(self, message: str, level: str = "info") -> None:
        self.write("log", level=level, message=message)

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
        )

        save_checkpoint(state, checkpoint_file(self.run_dir, result.round))
        self.write("round", sync=True, row=round_row(result), channels=channel_rows(result),
                   picks=pick_rows(result), gammas=gamma_rows(result))
        checkpoint_file(self.run_dir, result.round - 1).unlink(missing_ok=True)


def recorded_round(run_dir: str | Path) -> int:
    """The last round the events file records, -1 when none: where a job resumes."""
    last = -1
    for event in EventsReader(events_path(run_dir)).read():
        if event.get("type") == "round":
            last = max(last, event["row"]["round"])
    return last


# ---- the head's side ------------------------------------------------------------------------------


class EventsReader:
    """Reads the complete lines appended to an events file since the last read."""

    def __init__(self, path: str | Path):
        self.path, self.offset = Path(path), 0

    def read(self) -> list[dict[str, Any]]:
        """The new events, oldest first; a line that is not JSON becomes {"type": "bad", "text"}."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            if f.seek(0, os.SEEK_END) < self.offset:  # a new file in its place: read it whole
                self.offset = 0
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        events = []
        for line in data[:end].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"type": "bad", "text": line[:200].decode(errors="replace")})
        return events


@dataclass
class Ingested:
    """What a batch of events told the head besides the rows it wrote."""

    rounds: int = 0  # rounds newly recorded
    start: dict[str, Any] | None = None  # the last start event
    end: dict[str, Any] | None = None  # the last end event
    bad: list[str] | None = None  # lines that were not events


def ingest(store: Store, run_id: int, events: list[dict[str, Any]]) -> Ingested:
    """Write events into the store, idempotently (see the module's doc). Start and end events are
    returned for the head to judge: only it knows which job is the run's current one."""
    got = Ingested()
    if not events:  # the head polls every job's file twice a second; most polls find nothing
        return got
    last = store.last_round(run_id)
    for e in events:
        kind = e.get("type")
        if kind == "log":
            store.log_once(run_id, e["at"], e["level"], e["message"])
        elif kind == "epoch":
            store.add_epoch(run_id, e["row"])
        elif kind == "round":
            if e["row"]["round"] > last:  # rounds come in order; an earlier one is recorded
                store.add_round(run_id, e["row"], e["channels"], e["picks"], e["gammas"])
                last = e["row"]["round"]
                got.rounds += 1
        elif kind == "start":
            got.start = e
        elif kind == "end":
            got.end = e
        else:
            got.bad = [*(got.bad or []), e.get("text", repr(e)[:200])]
    return got
