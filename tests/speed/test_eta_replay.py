"""The ETAs' error on a recorded queue, replayed.

tests/speed/data/recorded_queue.db is a real queue (8 digits runs of two workloads, batch 32 and 64,
Random, Entropy, WS+init and distillation; one worker, one slot, a 2-core CPU busy with other work)
as the worker left it, less its channels, picks and events. Replayed at every moment something
happened (a run started, a round was recorded), the store is cut back to what it held then, and each
queued or running run's ETA (what `altui ls` and the dashboard show) is compared with when it really
ended. The ETAs before this card (training images only, at the epochs' images/s of any run of the
same model and batch size) are replayed beside them: the test prints both and asserts the new ones
are at least twice as close, and within 30% on average, from the first finished run on.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from pathlib import Path

from altui.speed.eta import images_left, queue_finish
from altui.speed.speeds import known_speeds
from altui.store import Store

RECORDED = Path(__file__).parent / "data" / "recorded_queue.db"
PROVENANCE = ("torch_version", "cuda_version", "device_name", "threads", "deterministic", "compiled", "altui_version")


def cut_back(db: Path, at: str) -> None:
    """The store as it was at `at`: later rounds gone, runs not started yet queued, runs started and
    not ended running, with no epoch of their round in progress (epochs carry no time)."""
    con = sqlite3.connect(db)
    blank = ", ".join(f"{c} = NULL" for c in PROVENANCE)
    con.execute("DELETE FROM rounds WHERE recorded_at > ?", (at,))
    con.execute(f"UPDATE runs SET status = 'queued', started_at = NULL, finished_at = NULL, attempt = 0, "
                f"heartbeat_at = NULL, {blank} WHERE started_at > ?", (at,))
    con.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE started_at <= ? AND finished_at > ?",
                (at, at))
    con.execute("DELETE FROM epochs WHERE NOT EXISTS "
                "(SELECT 1 FROM rounds r WHERE r.run_id = epochs.run_id AND r.round = epochs.round)")
    con.commit()
    con.close()


def old_etas(store: Store) -> dict[int, float | None]:
    """The ETAs as altui computed them before: training images over the epochs' images/s of any run
    of the same (model, batch size), one slot."""
    rows = store.db.conn.execute("""
        SELECT json_extract(r.spec_json, '$.model') AS model, json_extract(r.spec_json, '$.batch_size') AS batch,
            SUM(json_extract(r.spec_json, '$.initial') + e.round * json_extract(r.spec_json, '$.budget')) AS n,
            SUM((json_extract(r.spec_json, '$.initial') + e.round * json_extract(r.spec_json, '$.budget'))
                / e.images_per_second) AS seconds
        FROM epochs e JOIN runs r ON r.id = e.run_id WHERE e.images_per_second > 0 GROUP BY model, batch""").fetchall()
    speed = {(m, b): n / s for m, b, n, s in rows if s}
    finish, free = {}, 0.0
    for run in store.runs():
        if run["status"] not in ("queued", "running"):
            continue
        rate = speed.get((run["model"], run["batch_size"]))
        left = images_left(run["rounds_total"], run["epochs_total"], run["initial"], run["budget"],
                           run["rounds_done"], None)
        free = free + left / rate if rate and free is not None else None
        finish[run["id"]] = free
    return finish


def test_etas_of_a_recorded_queue_are_close_to_when_its_runs_ended(tmp_path: Path) -> None:
    with sqlite3.connect(RECORDED) as con:
        ended = dict(con.execute("SELECT id, finished_at FROM runs"))
        moments = sorted(t for (t,) in con.execute("SELECT started_at FROM runs UNION SELECT recorded_at FROM rounds"))
    first_done = min(ended.values())
    errors: dict[str, list[float]] = {"now": [], "before": []}
    known = {"now": 0, "before": 0, "all": 0}
    for at in moments:
        if at < first_done:  # nothing measured yet: no ETA either way
            continue
        db = tmp_path / f"{known['all']}.db"
        shutil.copy(RECORDED, db)
        cut_back(db, at)
        with Store(db) as store:
            runs = store.runs()
            now = datetime.fromisoformat(at)
            etas = {"now": queue_finish(runs, known_speeds(store), slots=1, now=now), "before": old_etas(store)}
        for run_id in etas["now"]:
            actual = (datetime.fromisoformat(ended[run_id]) - now).total_seconds()
            known["all"] += 1
            for way, eta in etas.items():
                known[way] += eta[run_id] is not None
            if None in (etas["now"][run_id], etas["before"][run_id]) or actual <= 0:
                continue  # a workload not measured yet (the batch-64 runs before the first of them ends)
            for way, eta in etas.items():
                errors[way].append(abs(eta[run_id] - actual) / actual)
    mean = {way: sum(e) / len(e) for way, e in errors.items()}
    print(f"\nETA error on the recorded queue, {len(errors['now'])} ETAs both ways give: mean {mean['now']:.1%} now, "
          f"{mean['before']:.1%} before ({mean['before'] / mean['now']:.1f}x); ETAs given: {known['now']} now, "
          f"{known['before']} before, of {known['all']}")
    assert len(errors["now"]) >= 20
    assert mean["now"] < 0.3 and mean["now"] < mean["before"] / 2  # 24% and 56% when recorded
