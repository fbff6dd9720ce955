"""Two stores in one folder keep their runs' folders apart: each run's interruption and resume reads
its own checkpoint (the same picks as an uninterrupted run), never the other store's run of the same
id. And a store written before run folders had their own folder finds its checkpoints after the move."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlite_utils import Database
from worker_helpers import BASE

from altui.al.presets import resolve
from altui.execution import runner
from altui.store import Store, migrations, run_folder


class StopAfterRound0:
    """Ctrl-C once round 0 is recorded: the run is cancelled with its round and checkpoint kept."""

    def round_done(self, result: Any, state: Any) -> None:
        if result.round == 0:
            raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def queue_one(db: Path, method: str, seed: int) -> int:
    config = resolve(method, {**{k: v for k, v in BASE.items() if k != "seeds"}, "seed": seed, "rounds": 3})
    with Store(db) as store:
        [run_id] = store.enqueue("e", "e.toml", {}, [{"name": f"e/{method}/s{seed}", "method": method,
                                                       "seed": seed, "config": config.to_dict()}])
        store.claim("cpu", run_id)
    return run_id


def picks(db: Path, run_id: int) -> list[tuple[int, int]]:
    with Store(db) as store:
        return [(p["round"], p["pool_index"]) for p in store.export_rows("picks") if p["run_id"] == run_id]


def test_two_stores_in_one_folder_resume_each_from_its_own_checkpoint(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    runs = {a: ("Entropy+init", 0), b: ("Random", 1)}
    for db, (method, seed) in runs.items():  # both stores' first run is run 1
        assert queue_one(db, method, seed) == 1
    for db in (a, b):  # round 0 of each, then Ctrl-C: b's checkpoint would have replaced a's
        assert runner.execute(db, 1, "cpu", observer=StopAfterRound0()) == "cancelled"
    assert run_folder(a, 1) != run_folder(b, 1)
    assert (run_folder(a, 1) / "round-0.pt").exists() and (run_folder(b, 1) / "round-0.pt").exists()
    for db in (a, b):  # `altui retry`: each resumes after its round 0
        with Store(db) as store:
            store.retry([1])
            store.claim("cpu", 1)
        assert runner.execute(db, 1, "cpu") == "done"

    for db, (method, seed) in runs.items():  # the same runs, never interrupted, each alone in a folder
        alone = tmp_path / f"alone-{db.stem}" / "altui.db"
        queue_one(alone, method, seed)
        assert runner.execute(alone, 1, "cpu") == "done"
        assert picks(db, 1) == picks(alone, 1), f"{db.name}'s run resumed from another checkpoint"
    assert not (tmp_path / "1").exists(), "no run folder directly beside the stores"


def test_a_store_from_before_m007_moves_its_run_folders_and_resumes_from_them(tmp_path: Path) -> None:
    db = tmp_path / "altui.db"
    run_id = queue_one(db, "Random", 0)
    assert runner.execute(db, run_id, "cpu", observer=StopAfterRound0()) == "cancelled"
    # as an altui before m007 left it: the run's folder (round 0's checkpoint) beside the store
    run_folder(db, run_id).rename(tmp_path / str(run_id))
    (tmp_path / "2").symlink_to(tmp_path)  # a link where another run's folder would be: never followed
    old = Database(db)
    old.execute("DELETE FROM _sqlite_migrations WHERE name = 'm007_run_folders'")
    old.conn.commit()
    old.close()

    with Store(db) as store:
        assert store.schema_version == len(migrations._migrations)
        assert (run_folder(db, run_id) / "round-0.pt").exists() and not (tmp_path / str(run_id)).exists()
        store.retry([run_id])
        store.claim("cpu", run_id)
    assert runner.execute(db, run_id, "cpu") == "done", "resumed from the moved checkpoint"
    with Store(db) as store:
        assert store.last_round(run_id) == 2
    assert (tmp_path / "2").is_symlink()
