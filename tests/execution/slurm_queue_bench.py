"""The Slurm executor at scale: N tiny runs through a local single-node Slurm cluster.

    sudo python tests/execution/slurm_queue_bench.py [--runs 100] [--max-jobs 8] [--cpus 8]

Starts a cluster as the tests do (tests/execution/slurm_cluster.py: Debian's slurm-wlm and munge, as root),
queues N tiny `digits` runs (2 rounds of 1 epoch, CPU), starts `altui worker start --executor slurm
--max-jobs M` and waits until every run is done. It reports:

- queue to done: from `altui queue` to the last run's end, against the ideal of the same work (the
  jobs' own time on the node, start to end, divided by M): their ratio is the executor's efficiency;
- per run: submission to done against the job's own time (from its start line, written before torch
  is imported, to its end line), the difference being Slurm's scheduling, the job's start-up
  (Python, submitit) and the ingest; and from done to the job leaving squeue (Python exiting,
  submitit's result, srun), when its place frees;
- the head's CPU use (the worker process and the squeue/sbatch/scontrol it waits for), in CPU
  seconds and as a share of one core over the whole time;
- the ingest lag: from a round's line written on the node (its `at`) to its row in SQLite
  (`rounds.recorded_at`), and from the job's end line to the run's `finished_at`.
The figures in docs/worker.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the local cluster the tests use (this folder)
sys.path.insert(0, str(ROOT))

from slurm_cluster import LocalSlurm  # noqa: E402

from altui.execution.daemon import stop_worker, worker_status  # noqa: E402
from altui.execution.events import EventsReader, events_path  # noqa: E402
from altui.store import Store  # noqa: E402

ALTUI = [sys.executable, "-m", "altui"]
SPEC = """\
[defaults]
dataset = "digits"
model = "cnn5"
device = "cpu"
rounds = 2
initial = 20
budget = 20
epochs = 1
milestones = [1]
pool_subset = 200

[[experiment]]
name = "bench"
methods = ["Random"]
seeds = [{seeds}]
"""


def seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and of the children it waited for (squeue, sbatch, ...)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def summary(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"median {statistics.median(values):7.2f}  p95 {p95:7.2f}  max {values[-1]:7.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--max-jobs", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=8, help="CPUs of the cluster's node (its configuration)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    def interrupt(signum: int, frame: object) -> None:  # stop the worker and the cluster on the way out
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)  # also when started in the background, which ignores it
    cluster = LocalSlurm(cpus=max(args.cpus, args.max_jobs)).start()
    work = Path(tempfile.mkdtemp(prefix="altui-bench-"))
    db = work / "runs" / "altui.db"
    env = dict(cluster.env, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=str(ROOT))
    try:
        (work / "experiments.toml").write_text(SPEC.format(seeds=", ".join(map(str, range(args.runs)))))
        altui = lambda *a: subprocess.run([*ALTUI, "--db", str(db), *a], env=env, check=True,  # noqa: E731
                                          capture_output=True, text=True, cwd=work).stdout
        queued_at = time.monotonic()
        altui("queue", str(work / "experiments.toml"))
        altui("worker", "start", "--executor", "slurm", "--max-jobs", str(args.max_jobs), "--gpus-per-job", "0",
              "--cpus-per-job", "1", "--time", "60")
        head = worker_status(db)["pid"]
        cpu_start = cpu_seconds(head)
        in_flight: list[int] = []
        with Store(db) as store:
            while True:
                rows = store.runs()
                if all(r["status"] in ("done", "failed", "cancelled") for r in rows):
                    break
                if time.monotonic() - queued_at > args.timeout:
                    raise SystemExit(f"not done after {args.timeout:.0f} s")
                in_flight.append(sum(j["name"].startswith("altui-") for j in cluster.jobs()))
                time.sleep(1.0)
            wall = time.monotonic() - queued_at
            head_cpu = cpu_seconds(head) - cpu_start
            while any(j["name"].startswith("altui-") for j in cluster.jobs()):  # the last jobs leave
                time.sleep(0.5)
            time.sleep(2 * 1.0)  # and the head sees them go (it polls each second while they linger)
            rss_kb = int(next(line.split()[1] for line in Path(f"/proc/{head}/status").read_text().splitlines()
                              if line.startswith("VmRSS")))
            failed = [r["name"] for r in rows if r["status"] != "done"]
            node_time, overhead, round_lag, end_lag, linger = [], [], [], [], []
            for r in rows:
                events = EventsReader(events_path(store.run_dir(r["id"]))).read()
                start = next(e["at"] for e in events if e["type"] == "start")
                end = next(e["at"] for e in events if e["type"] == "end")
                log = store.events(r["id"], limit=1000)
                submitted = next(e["at"] for e in log if e["message"].startswith("submitted as Slurm job"))
                gone = next(e["at"] for e in log if e["message"].startswith(f"Slurm job {r['slurm_job_id']} ended"))
                node_time.append(seconds(start, end))
                overhead.append(seconds(submitted, r["finished_at"]) - node_time[-1])
                recorded = {x["round"]: x["recorded_at"] for x in store.rounds(r["id"])}
                round_lag += [seconds(e["at"], recorded[e["row"]["round"]]) for e in events if e["type"] == "round"]
                end_lag.append(seconds(end, r["finished_at"]))
                linger.append(seconds(r["finished_at"], gone))
        stop_worker(db)
    finally:
        try:
            stop_worker(db)
        except Exception:
            pass
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    ideal = sum(node_time) / args.max_jobs
    figures = {
        "runs": args.runs, "max_jobs": args.max_jobs, "failed": failed, "queue_to_done_s": wall,
        "ideal_s": ideal, "efficiency": ideal / wall, "max_in_flight": max(in_flight),
        "mean_in_flight": statistics.mean(in_flight), "head_cpu_s": head_cpu,
        "head_cpu_share": head_cpu / wall, "head_rss_mb": rss_kb / 1024,
        "node_time_s": statistics.median(node_time), "overhead_s": statistics.median(overhead),
        "round_lag_median_s": statistics.median(round_lag), "round_lag_max_s": max(round_lag),
        "end_lag_median_s": statistics.median(end_lag), "linger_median_s": statistics.median(linger),
        "load_average": os.getloadavg(),
    }
    print(f"{args.runs} runs, --max-jobs {args.max_jobs}, {os.cpu_count()} cores, load average now "
          f"{os.getloadavg()[0]:.1f}; {len(failed)} not done")
    print(f"queue to done        {wall:8.1f} s   (ideal {ideal:.1f} s: the jobs' own time / {args.max_jobs}; "
          f"ratio ideal/actual {ideal / wall:.2f})")
    print(f"jobs in flight       max {max(in_flight)}, mean {statistics.mean(in_flight):.1f} (squeue once a second)")
    print(f"per run, seconds     job on the node:        {summary(node_time)}")
    print(f"                     submission to done - job: {summary(overhead)}")
    print(f"                     done to job gone (place free): {summary(linger)}")
    print(f"head CPU             {head_cpu:8.1f} s   ({100 * head_cpu / wall:.1f} % of one core), RSS "
          f"{rss_kb / 1024:.0f} MB")
    print(f"ingest lag, seconds  round line -> row:     {summary(round_lag)}")
    print(f"                     end line -> finished:   {summary(end_lag)}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
