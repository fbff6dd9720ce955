"""Simulated experiments for the claims' error rates, written through the store's public tables
(docs/schema.md) and read back by `altui.results.claims.experiment_claims`, as a user's runs would be.

Each simulated experiment has a fixed test set of `IMAGES` images and `seeds` seeds of every method
the claims name. Whether a run's model gets image i right at round t is a coin with
    logit p = difficulty_i + 0.5 t + method_image[m, i] + seed[s, t] + run[m, s, t] (+ shift)
- difficulty_i: how hard the image is (the same for every model);
- method_image: how a method's models fare on this particular image (`image_sd`): a method better on
  some images and worse on others is no better on another test set, yet on this one every seed sees
  the same few images, the test set's own noise that a t test over seeds cannot see;
- seed: the seed's initial labels and initialisation, shared by every method of that seed (pairing);
- run: the run's own luck (`run_sd`), the spread of the paired differences over seeds.
Under the null every method draws from the same distribution. `effect` > 0 makes WS+init better by
that many accuracy points on every seed (flipping that many of its wrong answers, at random images,
to right: the same gain on any test set). Claim 4 reads channel counts drawn alike for every method;
claim 6 a Table-1 sweep (N x decay, round 0) in which the decay does not matter.

`python tests/results/claims_simulation.py` prints docs/export.md's table of rates.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlite_utils import Database

from altui.al.sink import CorrectImages
from altui.results import claims
from altui.store import Store, now

IMAGES = 450  # digits' test set
ROUNDS = 3
METHODS = ("WS+init", "Entropy+init", "WS+init+KD1", "WS+init+KD2", "WS", "Random", "Entropy", "LL")
TABLE_N, TABLE_DECAYS = (100, 200, 400), (0.04, 0.02, 0.01)
PAPER_LAYER = "blocks.0.0.1"  # cnn5's (Figure 5)


@dataclass(frozen=True)
class Scenario:
    name: str
    run_sd: float  # logit SD of a run's luck: the seeds' spread
    image_sd: float  # logit SD of a method's image-by-image fortune: the test set's own noise


SEEDS_DOMINATE = Scenario("seeds dominate", run_sd=0.25, image_sd=0.2)
TEST_SET_MATTERS = Scenario("the test set matters", run_sd=0.08, image_sd=0.8)


def _right(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return rng.random(logit.shape) < 1 / (1 + np.exp(-logit))


def _flip(rng: np.random.Generator, right: np.ndarray, k: int) -> np.ndarray:
    """`k` wrong answers of each model (the last axis: images) made right, at random images."""
    right = right.copy()
    for index in np.ndindex(right.shape[:-1]):
        wrong = np.flatnonzero(~right[index])
        right[index + (rng.choice(wrong, min(k, len(wrong)), replace=False),)] = True
    return right


def paired_sd(scenario: Scenario, seeds: int = 4000, seed: int = 99) -> float:
    """The SD over seeds of the last round's accuracy difference between two methods, under the null
    (on one test set): the unit of `effect`."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(2.0, 1.5, IMAGES)
    logit = (difficulty + 0.5 * (ROUNDS - 1) + rng.normal(0, scenario.image_sd, (2, 1, IMAGES))
             + rng.normal(0, 0.2, (1, seeds, 1)) + rng.normal(0, scenario.run_sd, (2, seeds, 1)))
    accuracy = _right(rng, logit).mean(axis=2)
    return float((accuracy[0] - accuracy[1]).std(ddof=1))


def _rows(run_id: int, t: int, n: int, right: np.ndarray, effective: int, decay: float) -> dict:
    return {"run_id": run_id, "round": t, "n_labeled": n, "accuracy": float(right.mean()), "test_loss": 0.3,
            "weight_decay": decay, "lr": 0.01, "effective_channels": effective, "total_channels": 224,
            "conv_l2": 3.0, "train_seconds": 1.0, "acquire_seconds": 0.1, "pick_mean_score": None,
            "pick_class_counts": "[]", "gamma_bins": "[]", "gamma_counts": "[]", "recorded_at": now(),
            "test_images": IMAGES, "test_correct": CorrectImages.of(right).text()}


def _enqueue(store: Store, name: str, runs: list[tuple[str, int, dict]]) -> list[int]:
    specs = [{"name": f"{name}/{m}/{json.dumps(sweep)}/s{s}", "method": m, "seed": s, "sweep": sweep,
              "config": {"model": "cnn5"}} for m, s, sweep in runs]
    return store.enqueue(name, "experiments.toml", {"name": name}, specs)


def write_experiment(store: Store, db: Database, name: str, rng: np.random.Generator, seeds: int,
                     scenario: Scenario, effect: float = 0.0) -> None:
    """One experiment of every method of claims 1-5, `seeds` seeds, `ROUNDS` rounds."""
    ids = _enqueue(store, name, [(m, s, {}) for m in METHODS for s in range(seeds)])
    difficulty = rng.normal(2.0, 1.5, IMAGES)
    logit = (difficulty + 0.5 * np.arange(ROUNDS)[None, None, :, None]
             + rng.normal(0, scenario.image_sd, (len(METHODS), 1, 1, IMAGES))
             + rng.normal(0, 0.2, (1, seeds, ROUNDS, 1))
             + rng.normal(0, scenario.run_sd, (len(METHODS), seeds, ROUNDS, 1)))
    right = _right(rng, logit)
    if effect:
        right[0] = _flip(rng, right[0], round(effect * IMAGES))  # METHODS[0] is WS+init
    effective = rng.normal(200, 6, (len(METHODS), seeds, ROUNDS)).round().astype(int)
    layer = rng.normal(30, 2, (len(METHODS), seeds, ROUNDS)).round().astype(int)
    rounds, channels = [], []
    ids_by = iter(ids)
    for m in range(len(METHODS)):
        for s in range(seeds):
            run_id = next(ids_by)
            for t in range(ROUNDS):
                rounds.append(_rows(run_id, t, 100 * (t + 1), right[m, s, t], int(effective[m, s, t]), 0.01))
                channels += [{"run_id": run_id, "round": t, "layer": PAPER_LAYER, "channels": 32,
                              "effective": int(layer[m, s, t])},
                             {"run_id": run_id, "round": t, "layer": "blocks.1.0.1", "channels": 192,
                              "effective": int(effective[m, s, t] - layer[m, s, t])}]
    db["rounds"].insert_all(rounds)
    db["channels"].insert_all(channels)


def write_table(store: Store, db: Database, name: str, rng: np.random.Generator, seeds: int,
                scenario: Scenario) -> None:
    """One Table-1 sweep (claim 6): `Random` at every N x decay, round 0; the decay does not matter."""
    cells = [(n, wd) for n in TABLE_N for wd in TABLE_DECAYS]
    ids = _enqueue(store, name, [("Random", s, {"initial": n, "weight_decay": wd}) for n, wd in cells
                                 for s in range(seeds)])
    difficulty = rng.normal(1.5, 1.5, IMAGES)
    by_n = np.repeat(0.5 * np.log2(np.array(TABLE_N) / 100), len(TABLE_DECAYS))[:, None, None]
    logit = (difficulty + by_n + rng.normal(0, scenario.image_sd, (len(cells), 1, IMAGES))
             + rng.normal(0, scenario.run_sd, (len(cells), seeds, 1)))
    right = _right(rng, logit)
    ids_by = iter(ids)
    db["rounds"].insert_all(_rows(next(ids_by), 0, n, right[c, s], 200, wd)
                            for c, (n, wd) in enumerate(cells) for s in range(seeds))


def write_channels(store: Store, db: Database, name: str, rng: np.random.Generator, seeds: int) -> None:
    """Claim 4 alone: WS+init and WS with channel counts drawn alike, accuracies equal, no bitsets
    (cheap enough for the thousands of experiments an exact 5% test needs to be told from 6%)."""
    methods = ("WS+init", "WS")
    ids = iter(_enqueue(store, name, [(m, s, {}) for m in methods for s in range(seeds)]))
    effective = rng.normal(200, 6, (len(methods), seeds, ROUNDS)).round().astype(int)
    layer = rng.normal(30, 2, (len(methods), seeds, ROUNDS)).round().astype(int)
    rounds, channels = [], []
    for m in range(len(methods)):
        for s in range(seeds):
            run_id = next(ids)
            for t in range(ROUNDS):
                row = _rows(run_id, t, 100 * (t + 1), np.ones(IMAGES, bool), int(effective[m, s, t]), 0.01)
                rounds.append({**row, "test_images": None, "test_correct": None})
                channels += [{"run_id": run_id, "round": t, "layer": PAPER_LAYER, "channels": 32,
                              "effective": int(layer[m, s, t])}]
    db["rounds"].insert_all(rounds)
    db["channels"].insert_all(channels)


def unsynced(store: Store, path: Path) -> Database:
    """A second connection for bulk rows, and neither waits for the disk at each commit: simulated
    experiments have nothing to keep through a power loss (the store runs with synchronous=FULL)."""
    store.db.execute("PRAGMA synchronous = OFF")
    db = Database(path)
    db.execute("PRAGMA synchronous = OFF")
    return db


def simulate_channels(path: Path, experiments: int, seeds: int, rng_seed: int = 0) -> list[list[claims.ClaimRow]]:
    rng = np.random.default_rng(rng_seed)
    with Store(path) as store:
        db = unsynced(store, path)
        for i in range(experiments):
            write_channels(store, db, f"channels{i}", rng, seeds)
        db.close()
        return [claims.experiment_claims(store, f"channels{i}") for i in range(experiments)]


def decided(rows: Iterable[claims.ClaimRow]) -> set[int]:
    """The claims that an experiment decided (any of their rows supported or contradicted)."""
    return {r.claim for r in rows if r.verdict != claims.INCONCLUSIVE}


def supported(rows: Iterable[claims.ClaimRow], claim: int) -> bool:
    return any(r.claim == claim and r.verdict == claims.SUPPORTED for r in rows)


def simulate(path: Path, experiments: int, seeds: int, scenario: Scenario, effect: float = 0.0,
             rng_seed: int = 0, table: bool = True, per_image: bool = True) -> list[list[claims.ClaimRow]]:
    """`experiments` simulated experiments (and as many Table-1 sweeps), each checked by the claims;
    `per_image=False` drops the rounds' bitsets first (the statistic of an old store: seeds only)."""
    rng = np.random.default_rng(rng_seed)
    results = []
    with Store(path) as store:
        db = unsynced(store, path)
        for i in range(experiments):
            write_experiment(store, db, f"sim{i}", rng, seeds, scenario, effect)
            if table:
                write_table(store, db, f"table{i}", rng, seeds, scenario)
        if not per_image:
            db.execute("UPDATE rounds SET test_images = NULL, test_correct = NULL")
            db.conn.commit()
        db.close()
        for i in range(experiments):
            checked = claims.experiment_claims(store, f"sim{i}")
            if table:
                checked += claims.experiment_claims(store, f"table{i}")
            results.append(checked)
    return results


def rates(results: list[list[claims.ClaimRow]]) -> dict[int, float]:
    """Per claim, the share of experiments in which it was decided."""
    return {c: sum(c in decided(r) for r in results) / len(results) for c in range(1, 7)}


def main() -> None:
    """docs/export.md's table: error rates under the null, power of claim 1 at 1.5 SD."""
    import tempfile

    experiments = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print("| scenario | statistic | seeds | " + " | ".join(f"claim {c}" for c in range(1, 7))
          + " | claim 1 supported at +1.5 SD |")
    print("|---|---|---:|" + "---:|" * 7)
    for scenario in (SEEDS_DOMINATE, TEST_SET_MATTERS):
        effect = 1.5 * paired_sd(scenario)
        for per_image in (True, False):
            for seeds in (3, 5, 10):
                with tempfile.TemporaryDirectory() as tmp:
                    null = rates(simulate(Path(tmp) / "null.db", experiments, seeds, scenario, per_image=per_image))
                    alt = simulate(Path(tmp) / "alt.db", experiments, seeds, scenario, effect, rng_seed=1,
                                   table=False, per_image=per_image)
                power = sum(supported(r, 1) for r in alt) / len(alt)
                what = "seeds × test images" if per_image else "seeds only (no bitsets)"
                print(f"| {scenario.name} | {what} | {seeds} | "
                      + " | ".join(f"{100 * null[c]:.1f}%" for c in range(1, 7)) + f" | {100 * power:.0f}% |",
                      flush=True)


if __name__ == "__main__":
    main()
