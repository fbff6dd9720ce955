"""One run in its own process: settings from the store -> altui.al loop -> rows in the store.

A round's checkpoint is written first (temporary name, then an atomic rename); the transaction that
records the round's rows commits after it. A run resumes from its last recorded round.
"""

from __future__ import annotations

import _thread
import argparse
import json
import math
import os
import signal
import sys
import threading
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from altui.al.config import RunConfig
from altui.al.loop import run as run_loop
from altui.al.sink import EpochStats, ResumeState, RoundResult, Sink
from altui.store import Store, checkpoint_file

if TYPE_CHECKING:
    from altui.events import EventSink

HEARTBEAT_SECONDS = 2.0
ERROR_TAIL = 4000  # characters of a traceback kept in runs.error


class Stopped(Exception):
    """The run was asked to stop: cancelled, or its worker is going away."""


class StoreSink:
    """Writes what the loop reports into the store, and passes it on to an optional observer."""

    def __init__(self, store: Store, run_id: int, observer: Sink | None = None):
        self.store, self.run_id, self.observer = store, run_id, observer

    def log(self, message: str, level: str = "info") -> None:
        self.store.log(self.run_id, message, level)
        if self.observer:
            self.observer.log(message, level)

    def epoch_done(self, stats: EpochStats) -> None:
        row = asdict(stats)
        del row["epochs"]
        self.store.add_epoch(self.run_id, row)
        if self.observer:
            self.observer.epoch_done(stats)

    def round_done(self, result: RoundResult, state: ResumeState) -> None:
        path = self.store.checkpoint_path(self.run_id, result.round)
        save_checkpoint(state, path)
        self.store.add_round(self.run_id, round_row(result), channel_rows(result), pick_rows(result),
                             gamma_rows(result))
        previous = self.store.checkpoint_path(self.run_id, result.round - 1)
        previous.unlink(missing_ok=True)  # only the last round's checkpoint is needed to resume
        if self.observer:
            self.observer.round_done(result, state)


def round_row(r: RoundResult) -> dict[str, Any]:
    return {
        "round": r.round, "n_labeled": r.n_labeled, "accuracy": r.accuracy, "test_loss": r.test_loss,
        "weight_decay": r.weight_decay, "lr": r.lr, "effective_channels": r.probes.effective_channels,
        "total_channels": r.probes.total_channels, "conv_l2": r.probes.conv_l2,
        "train_seconds": r.train_seconds, "acquire_seconds": r.acquire_seconds,
        "pick_mean_score": r.pick_mean_score, "pick_class_counts": json.dumps(r.pick_class_counts),
        "gamma_bins": json.dumps(r.probes.gamma_bins), "gamma_counts": json.dumps(r.probes.gamma_counts),
    }


def channel_rows(r: RoundResult) -> list[dict[str, Any]]:
    return [{"layer": c.layer, "channels": c.channels, "effective": c.effective} for c in r.probes.channels]


def gamma_rows(r: RoundResult) -> list[dict[str, Any]]:
    return [{"layer": c.layer, "abs_gamma": float32_json(c.abs_gamma)} for c in r.probes.channels]


def float32_json(values: tuple[float, ...]) -> str:
    """A JSON array of float32 values in their shortest exact form (a float32 read back is the same
    float32); a non-finite value (a diverged layer) is null, which JSON allows and NaN is not."""
    return "[" + ",".join(str(np.float32(v)) if math.isfinite(v) else "null" for v in values) + "]"


def pick_rows(r: RoundResult) -> list[dict[str, Any]]:
    return [{"pool_index": i, "score": s} for i, s in zip(r.picks, r.pick_scores, strict=True)]


def save_checkpoint(state: ResumeState, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state.to_dict(), tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_resume(store: Store, run_id: int) -> ResumeState | None:
    last = store.last_round(run_id)
    return None if last < 0 else load_checkpoint(run_id, last, store.checkpoint_path(run_id, last))


def load_checkpoint(run_id: int, round_: int, path: Path) -> ResumeState:
    if not path.exists():
        raise FileNotFoundError(f"run {run_id} recorded round {round_} but its checkpoint {path} is missing")
    return ResumeState.from_dict(torch.load(path, weights_only=True))


def execute(db_path: str | Path, run_id: int, device: str | None = None, observer: Sink | None = None,
            interrupt_status: str = "cancelled") -> str:
    """Run (or resume) one run that the caller has marked running; returns its final status.

    A heartbeat thread keeps runs.heartbeat_at fresh and interrupts the loop when the run is
    cancelled. An interrupt (Ctrl-C, SIGTERM) leaves the run `interrupt_status` unless it was
    cancelled; an exception fails the run with the traceback's tail in runs.error.
    """
    store = Store(db_path)
    row = store.run(run_id)
    cfg = RunConfig.from_dict(json.loads(row["spec_json"]))
    if device:
        cfg = replace(cfg, device=device)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(db_path, run_id, stop), daemon=True)
    beat.start()
    try:
        resume = load_resume(store, run_id)
        if resume is None or resume.next_round < cfg.rounds:
            run_loop(cfg, StoreSink(store, run_id, observer), resume)
        status = "done"
        store.finish(run_id, status)
    except (KeyboardInterrupt, Stopped):
        now_status = store.run(run_id)["status"]
        status = "cancelled" if now_status == "cancelled" else interrupt_status
        if status == "queued":
            store.release(run_id)  # its worker is stopping: no attempt is used up
        else:
            store.finish(run_id, status)
        store.log(run_id, f"stopped: {status}; completed rounds are kept", "warning")
    except Exception as exc:  # one run's failure (a bug, out of memory) must not take the queue down
        status = "failed"
        tail = traceback.format_exc()[-ERROR_TAIL:]
        store.finish(run_id, status, tail)
        store.log(run_id, f"failed: {exc}", "error")
    finally:
        stop.set()
        beat.join(timeout=5)
        store.close()
    return status


def _heartbeat(db_path: str | Path, run_id: int, stop: threading.Event) -> None:
    with Store(db_path) as store:
        while not stop.wait(HEARTBEAT_SECONDS):
            if store.heartbeat(run_id) == "cancelled":
                _thread.interrupt_main()  # raises KeyboardInterrupt in the loop's thread
                return


def execute_to_events(sink: EventSink, run_id: int, config: dict[str, Any], device: str | None,
                      recorded: int = -1) -> str:
    """Run (or resume) one run without the store, as a Slurm job does on its compute node: events go
    to the run's events file through `sink` (altui/events.py), which the head ingests. Resumes after
    the last round that the file or the store (`recorded`, as the head saw it at submission) records.

    Returns done or failed, having written the run's end. A stop (Stopped, KeyboardInterrupt: Slurm
    cancels, requeues or preempts the job) writes no end: the head judges from the store and Slurm.
    """
    from altui.events import recorded_round

    try:
        cfg = RunConfig.from_dict(config)
        if device:
            cfg = replace(cfg, device=device)
        last = max(recorded, recorded_round(sink.run_dir))
        resume = None if last < 0 else load_checkpoint(run_id, last, checkpoint_file(sink.run_dir, last))
        if resume is None or resume.next_round < cfg.rounds:
            run_loop(cfg, sink, resume)
        sink.end("done")
        return "done"
    except (KeyboardInterrupt, Stopped) as stop:
        sink.log(f"stopped ({stop or 'interrupted'}); completed rounds are kept", "warning")
        raise
    except Exception as exc:  # a bug or a bad setting: the run fails, as in execute()
        sink.log(f"failed: {exc}", "error")
        sink.end("failed", traceback.format_exc()[-ERROR_TAIL:])
        return "failed"


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker's run subprocess: `python -m altui.runner --db PATH --run ID`."""
    parser = argparse.ArgumentParser(prog="python -m altui.runner")
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--device")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise Stopped()

    signal.signal(signal.SIGTERM, on_term)
    status = execute(args.db, args.run, args.device, interrupt_status="queued")
    return 0 if status in ("done", "cancelled", "queued") else 1


if __name__ == "__main__":
    sys.exit(main())
