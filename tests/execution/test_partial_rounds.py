"""A round longer than a Slurm job's time limit: the job saves the round in progress at an epoch's end,
and the next job goes on from there with exactly the results of a run that was never stopped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import BASE

from altui.al.presets import resolve
from altui.execution import runner
from altui.execution.events import EventSink, EventsReader, events_path, ingest
from altui.execution.executors.slurm.options import save_interval
from altui.store import Store, partial_file

SETTINGS = {**{k: v for k, v in BASE.items() if k != "seeds"}, "seed": 3, "epochs": 4, "milestones": [2]}


class StoppedAtTheLimit(KeyboardInterrupt):
    """What Slurm's stop does to a job, raised right after the save at round `round`'s epoch `epoch`."""


class JobStoppedAfter(EventSink):
    """A job that Slurm stops after the save at `stop_at` (round, epoch)."""

    def __init__(self, run_dir: Path, job_id: str, stop_at: tuple[int, int]):
        super().__init__(run_dir, job_id, save_every=0.0)
        self.stop_at = stop_at

    def epoch_saved(self, capture: Any) -> None:
        super().epoch_saved(capture)
        state = json.loads(events_path(self.run_dir).read_text().splitlines()[-1])
        if (state.get("round"), state.get("epoch")) == self.stop_at:
            raise StoppedAtTheLimit()


def rounds_of(run_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in events_path(run_dir).read_text().splitlines()]
    skip = {"train_seconds", "acquire_seconds"}
    return [{"row": {k: v for k, v in e["row"].items() if k not in skip}, "picks": e["picks"]}
            for e in lines if e["type"] == "round"]


@pytest.mark.parametrize("method", ["WS+init+KD1", "LL"])  # a teacher; a loss module beside the model
def test_a_round_stopped_after_an_epoch_goes_on_there_with_the_same_results(tmp_path: Path, method: str) -> None:
    config = resolve(method, SETTINGS).to_dict()
    whole = tmp_path / "whole"
    sink = EventSink(whole, "1")
    assert runner.execute_to_events(sink, 1, config, "cpu") == "done"
    sink.close()

    parts = tmp_path / "parts"
    first = JobStoppedAfter(parts, "2", stop_at=(1, 2))  # round 1, after its epoch 2 of 4 (past a milestone)
    with pytest.raises(StoppedAtTheLimit):
        runner.execute_to_events(first, 1, config, "cpu")
    first.close()
    assert partial_file(parts).is_file()
    second = EventSink(parts, "3")  # the next job: no save wanted, it finishes
    assert runner.execute_to_events(second, 1, config, "cpu") == "done"
    second.close()

    assert rounds_of(parts) == rounds_of(whole)  # accuracy, test bits, channels, picks: all the same
    assert not partial_file(parts).exists()  # the round's own checkpoint replaced it
    lines = [json.loads(line) for line in events_path(parts).read_text().splitlines()]
    epochs = [(e["row"]["round"], e["row"]["epoch"]) for e in lines if e["type"] == "epoch"]
    assert epochs == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1), (1, 2), (1, 3), (1, 4)]  # epoch 1-2 not redone
    assert any(e["type"] == "log" and e["message"] == "round 1: resuming after epoch 2 of 4" for e in lines)

    with Store(tmp_path / "altui.db") as store:  # the head counts a saved line as the job's progress
        (run_id,) = store.enqueue("e", "test", {}, [{"name": "r", "method": method, "seed": 3, "config": config}])
        got = ingest(store, run_id, [e for e in EventsReader(events_path(parts)).read() if e.get("job") == "2"])
        assert got.rounds == 1 and got.round_jobs == {"2"} and not got.bad
        saved_only = [e for e in EventsReader(events_path(parts)).read() if e["type"] == "saved"]
        assert ingest(store, run_id, saved_only).round_jobs == {"2"}


def test_a_damaged_or_stale_save_is_not_used_and_the_round_starts_over(tmp_path: Path) -> None:
    config = resolve("WS+init", SETTINGS).to_dict()
    partial_file(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    partial_file(tmp_path).write_bytes(b"not a checkpoint")
    sink = EventSink(tmp_path, "4")
    assert runner.execute_to_events(sink, 1, config, "cpu") == "done"
    sink.close()
    lines = [json.loads(line) for line in events_path(tmp_path).read_text().splitlines()]
    assert not any("resuming after epoch" in e.get("message", "") for e in lines)
    assert [e["row"]["round"] for e in lines if e["type"] == "round"] == [0, 1]


def test_jobs_save_a_round_in_progress_four_times_per_time_limit() -> None:
    assert save_interval(60) == 900.0 and save_interval(1) == 15.0 and save_interval(None) == 600.0


def test_a_job_stopped_by_its_limit_that_neither_completed_nor_saved_a_round_fails_its_run(tmp_path: Path) -> None:
    """The head's judgement of a job that Slurm stopped at its time limit: progress (a round, or a
    saved part of one) resubmits the run with no attempt used; none fails it, with the reason."""
    from types import SimpleNamespace

    from altui.execution.executors.slurm.head import SlurmJob, SlurmWorker

    config = resolve("WS+init", SETTINGS).to_dict()
    with Store(tmp_path / "altui.db") as store:
        ids = store.enqueue("e", "test", {}, [{"name": n, "method": "WS+init", "seed": 3, "config": config}
                                              for n in ("stuck", "saved")])
        for run_id, job_id in zip(ids, ("5", "6"), strict=True):
            store.claim("slurm", run_id)
            store.slurm_submitted(run_id, job_id)
        head = SlurmWorker(store, SimpleNamespace(options=SimpleNamespace(max_jobs=2)), max_attempts=5)
        reader = EventsReader(tmp_path / "no-events.jsonl")
        head.stopped_by_slurm(SlurmJob(ids[0], "5", reader), "its time limit", "TIMEOUT")
        head.stopped_by_slurm(SlurmJob(ids[1], "6", reader, progressed=True), "its time limit", "TIMEOUT")
        stuck, saved = store.run(ids[0]), store.run(ids[1])
    assert stuck["status"] == "failed" and "before it completed a round or saved part of one" in stuck["error"]
    assert saved["status"] == "queued" and saved["attempt"] == 0, saved  # the attempt is given back
