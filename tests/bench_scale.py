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
from typing import Any

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
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle dashboard to measure (each path)")
    parser.add_argument("--dashboard-only", action="store_true", help="measure the idle dashboard only")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="altui-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "altui.db"
    db.unlink(missing_ok=True)
    start = time.perf_counter()
    build_store(db, args.runs)
    built = time.perf_counter() - start
    print(f"store: {args.runs:,} runs, {db.stat().st_size / 2**20:.1f} MiB, built in {built:.1f} s")
    try:
        report(db, args.idle, args.dashboard_only)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


# ---- the code paths issue 23 replaced, as they were (the baseline of each ratio) --------------------

OLD_RUNS_SQL = """
    SELECT r.*, e.name AS experiment,
        CASE WHEN json_valid(r.spec_json) THEN json_extract(r.spec_json, '$.rounds') END AS rounds_total,
        CASE WHEN json_valid(r.spec_json) THEN json_extract(r.spec_json, '$.epochs') END AS epochs_total,
        (SELECT COUNT(*) FROM rounds x WHERE x.run_id = r.id) AS rounds_done,
        l.n_labeled, l.accuracy, l.weight_decay, l.effective_channels, l.total_channels,
        (SELECT MAX(epoch) FROM epochs p WHERE p.run_id = r.id AND p.round =
            (SELECT COUNT(*) FROM rounds x WHERE x.run_id = r.id)) AS epoch
    FROM runs r JOIN experiments e ON e.id = r.experiment_id
    LEFT JOIN rounds l ON l.run_id = r.id AND l.round = (SELECT MAX(round) FROM rounds y WHERE y.run_id = r.id)
    ORDER BY r.id"""
OLD_THROUGHPUT_SQL = """
    SELECT model, batch, SUM(n) AS images, SUM(n / ips) AS seconds FROM (
        SELECT json_extract(r.spec_json, '$.model') AS model, json_extract(r.spec_json, '$.batch_size') AS batch,
            json_extract(r.spec_json, '$.initial') + e.round * json_extract(r.spec_json, '$.budget') AS n,
            e.images_per_second AS ips
        FROM epochs e JOIN runs r ON r.id = e.run_id WHERE e.images_per_second > 0)
    GROUP BY model, batch"""


def old_seconds_left(run: dict[str, Any], throughput: dict[tuple[str, int], float]) -> float | None:
    """ETA of a run before issue 23: its settings parsed from JSON, its rounds summed one by one."""
    from altui.speed.eta import config_of

    if run["status"] not in ("queued", "running"):
        return 0.0
    cfg = config_of(run)
    speed = throughput.get((cfg.model, cfg.batch_size))
    if not speed:
        return None
    done, epoch = run.get("rounds_done") or 0, run.get("epoch") if run["status"] == "running" else 0
    if done >= cfg.rounds:
        return 0.0
    current = cfg.n_labeled(done) * (cfg.epochs - min(epoch or 0, cfg.epochs))
    return (current + sum(cfg.epochs * cfg.n_labeled(t) for t in range(done + 1, cfg.rounds))) / speed


def old_ls(db: Path, as_json: bool) -> str:
    """`altui ls` (or --json) before issue 23, in this process: every run, every row printed through
    Rich (and the JSON through `printable`, character by character)."""
    import heapq
    import io

    from rich.console import Console
    from rich.table import Table

    from altui.cli.app import printable
    from altui.cli.runs import fmt, ls_row
    from altui.tui.format import duration, status_text

    with Store(db, create=False) as store:
        runs = [dict(r) for r in store.db.conn.execute(OLD_RUNS_SQL)]
        rows = [dict(r) for r in store.db.conn.execute(OLD_THROUGHPUT_SQL)]
    throughput = {(r["model"], r["batch"]): r["images"] / r["seconds"] for r in rows if r["seconds"]}
    eta: dict[int, float | None] = {}
    free = [0.0]
    for run in runs:
        if run["status"] == "running":
            eta[run["id"]] = old_seconds_left(run, throughput)
    for run in (r for r in runs if r["status"] == "queued"):
        start, need = heapq.heappop(free), old_seconds_left(run, throughput)
        eta[run["id"]] = None if need is None else start + need
        heapq.heappush(free, float("inf") if need is None else start + need)
    console = Console(file=io.StringIO(), width=240, markup=False, highlight=False)
    if as_json:
        console.print(printable(json.dumps([ls_row(r, eta.get(r["id"], 0.0)) for r in runs], indent=2)),
                      soft_wrap=True)
    else:
        table = Table(box=None)
        for col in ("id", "name", "status", "round", "labeled", "accuracy", "lambda_t", "eff.ch", "ETA", "attempt"):
            table.add_column(col)
        for r in runs:
            table.add_row(str(r["id"]), printable(r["name"]), status_text(r), f"{r['rounds_done']}/{r['rounds_total']}",
                          fmt(r["n_labeled"]), fmt(r["accuracy"], ".4f"), fmt(r["weight_decay"], ".3g"),
                          fmt(r["effective_channels"]), duration(eta.get(r["id"])), str(r["attempt"]))
        console.print(table)
    return console.file.getvalue()


def best_of(repeat: int, work: Any) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def new_ls(db: Path, *args: str) -> str:
    from typer.testing import CliRunner

    from altui.cli import app

    result = CliRunner().invoke(app, ["--db", str(db), "ls", *args])
    assert result.exit_code == 0, result.output
    return result.output


# ---- the idle dashboard ----------------------------------------------------------------------------


def dashboard_idle(db: Path, incremental: bool, seconds: float) -> tuple[float, int]:
    """CPU time (all threads) of the dashboard over `seconds` of idle polling (1 Hz) after its first
    snapshot, as a share of one core; and the polls that read the store in full."""
    import asyncio

    from altui.tui.app import AltuiApp
    from altui.tui.backend import Backend

    backend = Backend(db, db.parent / "experiments.toml", start_worker_on_queue=False, incremental=incremental)
    full = 0
    read = backend._read

    def counted(*args: Any) -> Any:
        nonlocal full
        full += 1
        return read(*args)

    backend._read = counted  # type: ignore[method-assign]
    polls = 0
    snapshot = backend.snapshot

    def counted_poll() -> Any:
        nonlocal polls
        polls += 1
        return snapshot()

    backend.snapshot = counted_poll  # type: ignore[method-assign]

    async def idle() -> tuple[float, int]:
        app = AltuiApp(backend, poll_seconds=1.0)
        async with app.run_test(size=(160, 50)) as pilot:
            while polls < 3:  # the first paint of 20,000 rows (seconds), and two polls after it
                await pilot.pause(0.1)
            start, before = time.process_time(), full
            await asyncio.sleep(seconds)
            return (time.process_time() - start) / seconds, full - before

    return asyncio.run(idle())


def report(db: Path, seconds: float, dashboard_only: bool = False) -> None:
    if not dashboard_only:
        report_ls(db)
    old_cpu, old_full = dashboard_idle(db, incremental=False, seconds=seconds)
    new_cpu, new_full = dashboard_idle(db, incremental=True, seconds=seconds)
    print(f"idle dashboard over {seconds:.0f} s: before {old_cpu:.1%} of a core ({old_full} full reads), "
          f"now {new_cpu:.1%} ({new_full} full reads): {old_cpu / max(new_cpu, 1e-6):.0f}x less CPU")


def report_ls(db: Path) -> None:
    ls_cmd, lines = cli_seconds(db, "ls")
    json_cmd, json_lines = cli_seconds(db, "ls", "--json")
    print(f"altui ls (a process, best of 3):        {ls_cmd:.2f} s ({lines} lines: 100 runs and the count of the rest)")
    print(f"altui ls --json (a process, best of 3): {json_cmd:.2f} s ({json_lines:,} lines: every run)")
    for what, args in (("ls", ()), ("ls --json", ("--json",)), ("ls --limit 0", ("--limit", "0"))):
        as_json = "--json" in args
        old = best_of(2, lambda: old_ls(db, as_json))  # noqa: B023
        new = best_of(3, lambda: new_ls(db, *args))  # noqa: B023
        print(f"{what:13} in process: before {old:.2f} s, now {new:.2f} s: {old / new:.1f}x faster")


if __name__ == "__main__":
    main()
