"""The Slurm executor's parts that need no cluster: its options as submitit parameters, the runs
table's Slurm columns, and the events file a job writes on its node, which the head ingests once
however often it reads it, into the rows a local run writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from worker_helpers import BASE

from altui.al.presets import resolve
from altui.execution import runner
from altui.execution.events import EventSink, EventsReader, events_path, ingest, recorded_round
from altui.execution.executors.slurm.options import SlurmError, SlurmOptions, pass_through, slurm_minutes
from altui.store import Store

# ---- options --------------------------------------------------------------------------


def test_slurm_options_map_to_submitit_parameters_and_are_saved_whole() -> None:
    assert [slurm_minutes(t) for t in ("90", "1:30", "1:30:00", "2-0", "1-2:03", "0-0:0:30")] == [
        90, 2, 90, 2880, 1563, 1]
    with pytest.raises(SlurmError, match="must be more than 0"):
        slurm_minutes("0")
    options = SlurmOptions(max_jobs=3, partition="gpu", time="2-00:00:00", gpus_per_job=2, cpus_per_job=8,
                           mem="64G", account="ml", qos="high", constraint="a100",
                           slurm_args=("exclude=node07", "mail-type=END", "reservation=maint", "setup=module load cuda",
                                       "setup=source venv/bin/activate", "use_srun=false", "contiguous"))
    assert options.parameters() == {
        "partition": "gpu", "time": 2880, "gpus_per_node": 2, "cpus_per_task": 8, "mem": "64G", "account": "ml",
        "qos": "high", "constraint": "a100", "stderr_to_stdout": True, "exclude": "node07", "mail_type": "END",
        "setup": ["module load cuda", "source venv/bin/activate"], "use_srun": False,
        "additional_parameters": {"reservation": "maint", "contiguous": True}, "signal_delay_s": 90}
    assert SlurmOptions.from_json(options.to_json()) == options
    from submitit.slurm.slurm import _make_sbatch_string  # the script submitit writes

    script = _make_sbatch_string(command="true", folder="/tmp", **SlurmOptions().parameters())
    assert "--time" not in script and "--gpus-per-node=1" in script, "no --time: the partition's default"
    again = options.merged({"partition": "", "max_jobs": 5, "slurm_args": [""], "mem": None})
    assert again.partition is None and again.max_jobs == 5 and again.slurm_args == () and again.mem == "64G"
    assert pass_through("exclusive=user") == ("exclusive", "user")
    with pytest.raises(SlurmError, match="use --gpus-per-job"):
        pass_through("gpus_per_node=2")
    for arg, why in [("array=0-9", "one job per run"), ("signal=USR1@100", "its own signal"),
                     ("--requeue", "decides itself"), ("comment=x", "--comment"), ("output=x.log", "log at")]:
        with pytest.raises(SlurmError, match=f"--slurm-arg '{arg}': refused: .*{why}"):
            pass_through(arg)


def test_the_stop_signal_fits_the_time_limit_and_a_limit_too_short_for_a_round_is_refused() -> None:
    assert SlurmOptions(time="1").parameters()["signal_delay_s"] == 10  # not submitit's 90 s of a 60 s job
    assert SlurmOptions(time="30").parameters()["signal_delay_s"] == 90  # 30 min: submitit's default again
    assert SlurmOptions(time="1", slurm_args=("signal_delay_s=15",)).parameters()["signal_delay_s"] == 15
    assert "signal_delay_s" not in SlurmOptions().parameters()  # the partition's limit: submitit's default
    with pytest.raises(SlurmError, match=r"--time 1: a job of 60 s leaves 0 s for the run after start-up .* "
                                         r"\(50 s before the limit\), too short for a round; allowed: a limit of "
                                         r"at least 95 s"):
        SlurmOptions(time="1", slurm_args=("signal_delay_s=50",)).parameters()


def test_an_experiments_slurm_table_goes_over_the_workers_options_and_a_cpu_run_asks_for_no_gpu() -> None:
    worker = SlurmOptions(partition="gpu", time="2:00:00", gpus_per_job=2, mem="32G", slurm_args=("exclude=n1",))
    assert worker.for_run({}, "cuda") == worker and worker.for_run({}, "auto") == worker
    assert worker.for_run({}, "cpu").gpus_per_job == 0
    assert worker.for_run({"gpus": 1}, "cpu").gpus_per_job == 1
    run = worker.for_run({"partition": "cpu", "time": 30, "cpus": 4, "qos": "short", "args": ["mail-type=FAIL"]}, "cpu")
    assert run.parameters() | {"partition": "cpu", "time": 30, "cpus_per_task": 4, "qos": "short", "mem": "32G",
                                "exclude": "n1", "mail_type": "FAIL"} == run.parameters()
    assert "gpus_per_node" not in run.parameters()


# ---- the events file ------------------------------------------------------------------------------


def test_the_events_file_ingests_once_and_matches_a_run_that_writes_the_store(tmp_path: Path) -> None:
    config = resolve("Entropy+init", {**{k: v for k, v in BASE.items() if k != "seeds"}, "seed": 0}).to_dict()
    with Store(tmp_path / "altui.db") as store:
        ids = store.enqueue("e", "test", {}, [{"name": n, "method": "Entropy+init", "seed": 0, "config": config}
                                              for n in ("local", "node")])
        store.claim("cpu", ids[0])
    assert runner.execute(tmp_path / "altui.db", ids[0], "cpu") == "done"

    run_dir = tmp_path / str(ids[1])
    sink = EventSink(run_dir, "7")  # what a Slurm job does on its node
    sink.start("n1", 0)
    assert runner.execute_to_events(sink, ids[1], config, "cpu") == "done" and recorded_round(run_dir) == 1
    sink.close()
    with open(events_path(run_dir), "ab") as f:
        f.write(b'{"type":"log","at":"x","job":"7","level":"info","message":"cut sh')  # a killed writer
    with Store(tmp_path / "altui.db") as store:
        first = ingest(store, ids[1], EventsReader(events_path(run_dir)).read())
        assert first.rounds == 2 and first.start["node"] == "n1" and first.end["status"] == "done"
        tables = {t: store.export_columns(t) for t in ("rounds", "epochs", "channels", "picks", "gammas")}
        before = {t: list(store.export_rows(t)) for t in tables}
        events_before = store.events(ids[1], limit=10_000)
        again = ingest(store, ids[1], EventsReader(events_path(run_dir)).read())  # a restarted head
        assert again.rounds == 0
        assert {t: list(store.export_rows(t)) for t in tables} == before
        assert store.events(ids[1], limit=10_000) == events_before
        assert not any("cut sh" in e["message"] for e in events_before)

        def rows(table: str, run_id: int) -> list[dict[str, Any]]:
            skip = {"run_id", "recorded_at", "train_seconds", "acquire_seconds"}
            return [{k: v for k, v in r.items() if k not in skip} for r in before[table] if r["run_id"] == run_id]

        for table in ("rounds", "channels", "picks", "gammas"):  # the same run, through either sink
            assert rows(table, ids[1]) == rows(table, ids[0]), table
        local, node = store.run(ids[0]), store.run(ids[1])  # and the same provenance
        assert node["threads"] == 1
        assert {k: node[k] for k in store.PROVENANCE} == {k: local[k] for k in store.PROVENANCE}
        assert [e["message"] for e in store.events(ids[1], limit=10_000)][:2] == [
            "Slurm job 7 started on n1", "round 0: 20 labels, weight decay 0.01"]

    EventSink(run_dir, "8").close()  # a new job trims the cut line before appending
    assert events_path(run_dir).read_bytes().endswith(b"}\n")
    lines = [json.loads(line) for line in events_path(run_dir).read_text().splitlines()]
    assert lines[0]["type"] == "start" and lines[-1] == {**lines[-1], "type": "end", "status": "done"}
    assert os.path.exists(run_dir / "round-1.pt") and not os.path.exists(run_dir / "round-0.pt")


# ---- the runs table's Slurm columns ---------------------------------------------------------------


def test_slurm_job_columns_follow_the_contract_with_the_dashboard(tmp_path: Path) -> None:
    """queued + slurm_job_id = pending in Slurm, never claimed; running has a node; a job's end that
    requeues the run clears both; an ended run keeps them; a local worker leaves such runs alone."""
    from altui.execution.executors.local import LocalExecutor
    from altui.execution.slots import make_slots
    from altui.execution.worker import Worker

    config = resolve("Random", {**{k: v for k, v in BASE.items() if k != "seeds"}, "seed": 0}).to_dict()
    with Store(tmp_path / "altui.db") as store:
        a, b = store.enqueue("e", "test", {}, [{"name": n, "method": "Random", "seed": 0, "config": config}
                                               for n in ("a", "b")])
        assert store.claim("slurm")["id"] == a
        store.slurm_submitted(a, "41")
        assert store.run(a) | {"status": "queued", "slurm_job_id": "41", "node": None} == store.run(a)
        assert store.claim("cpu", a) is None and store.claim("cpu")["id"] == b  # pending in Slurm: not claimed
        store.finish(b, "queued")
        assert store.slurm_state(a, "41", "n3") and not store.slurm_state(a, "41", "n3")  # True: it changed
        assert store.slurm_state(a, "99", None) is False  # another job's news changes nothing
        assert store.run(a) | {"status": "running", "slurm_job_id": "41", "node": "n3"} == store.run(a)
        assert [r["id"] for r in store.slurm_runs()] == [a]

        Worker(store, LocalExecutor(tmp_path / "altui.db"), make_slots("cpu", 1)).recover()
        assert store.run(a)["status"] == "running", "a local worker does not take a Slurm job's run for lost"

        store.finish(a, "queued")  # its job ended first: back to the queue, to be resubmitted
        assert store.run(a) | {"status": "queued", "slurm_job_id": None, "node": None} == store.run(a)
        store.claim("slurm", a)
        store.slurm_submitted(a, "42")
        store.slurm_state(a, "42", "n4")
        store.finish(a, "done")
        assert store.run(a) | {"status": "done", "slurm_job_id": "42", "node": "n4"} == store.run(a)
        store.cancel([b])
        store.retry([a, b])
        assert store.run(b)["slurm_job_id"] is None and store.run(b)["status"] == "queued"
        assert store.log_once(a, "2026-01-01T00:00:00", "info", "x") and not store.log_once(
            a, "2026-01-01T00:00:00", "info", "x")


def test_the_reader_moves_on_only_when_told_and_reads_a_torn_line_again_until_it_is_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    def log(message: str) -> bytes:
        return b'{"type":"log","at":"2026-01-01T00:00:00","job":"7","level":"info","message":"%s"}\n' % message.encode()

    first = log("a") + log("b")
    path.write_bytes(first)
    reader = EventsReader(path)
    assert [e["message"] for e in reader.read()] == ["a", "b"]
    assert [e["message"] for e in reader.read()] == ["a", "b"], "not committed: a failed ingest reads them again"
    reader.commit()
    assert reader.read() == []

    # NFS may show a file's new length before its bytes: a line of zeros but for its end.
    line = log("c")
    with open(path, "ab") as f:
        f.write(b"\0" * 30 + line[30:])
    assert reader.read() == [] and reader.read() == [], "a torn line is not skipped"
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, line, len(first))  # the bytes arrive
    os.close(fd)
    assert [e["message"] for e in reader.read()] == ["c"]
    reader.commit()

    with open(path, "ab") as f:  # a line that never reads whole: skipped once the job has ended...
        f.write(b"\0not json\n")
    assert reader.read() == []
    assert reader.read(final=True) == [{"type": "bad", "where": f"{path}:4", "text": "\0not json",
                                        "why": "not JSON (nor a torn line that became whole)"}]
    monkeypatch.setattr("altui.execution.events.TORN_SECONDS", 0.0)  # ... or after TORN_SECONDS
    assert [e["type"] for e in reader.read()] == ["bad"]
