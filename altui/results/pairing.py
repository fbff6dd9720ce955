"""Pairing seeds for the claims: one method's recorded rounds per seed (with which test images each
round's model got right, where recorded), the seeds that two methods share, the rounds at which they
are compared, and the paired statistic at one round (`stats.paired_test`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from altui.al.sink import CorrectImages
from altui.results.stats import Evidence, paired_test

Key = tuple[int, int]  # (round, n_labeled): "the same round" is the same index and the same labeled count


@dataclass
class Runs:
    """One method's runs at one sweep point: seed -> round -> value (and -> per-image correctness)."""

    values: dict[int, dict[Key, float]] = field(default_factory=dict)
    correct: dict[int, dict[Key, np.ndarray]] = field(default_factory=dict)


def correct_of(row: dict[str, Any]) -> np.ndarray | None:
    """A round row's per-image correctness (bool [images]); None when the round has none (recorded
    before schema 5, a read without `test_correct`, or a damaged one). Decoded once per row."""
    if "_correct" not in row:
        text, images = row.get("test_correct"), row.get("test_images")
        try:
            row["_correct"] = CorrectImages.parse(images, text).array() if text and images else None
        except ValueError:  # a damaged bitset (binascii.Error is one): the round counts as without one
            row["_correct"] = None
    return row["_correct"]


def runs_of(rows: Iterable[dict[str, Any]], method: str, column: str, per_image: bool = False) -> Runs:
    """`per_image`: keep the rows' per-image correctness (accuracy only: the other metrics have none)."""
    runs = Runs()
    for r in rows:
        if r["method"] == method:
            key = (r["round"], r["n_labeled"])
            runs.values.setdefault(r["seed"], {})[key] = float(r[column])
            right = correct_of(r) if per_image else None
            if right is not None:
                runs.correct.setdefault(r["seed"], {})[key] = right
    return runs


@dataclass(frozen=True)
class Pairing:
    seeds: list[int]  # seeds with both methods at every compared round
    dropped: dict[int, str]  # seed -> why it has no pair
    keys: list[Key]  # the rounds compared
    ahead: list[int]  # paired seeds that reached a later common round than the last compared


def pair(a: Runs, b: Runs, names: tuple[str, str], select: Callable[[list[Key]], list[Key]]) -> Pairing:
    """The seeds that both methods recorded, compared at the rounds that `select` keeps of those that
    every such seed reached: a seed that is ahead does not drop the others."""
    dropped: dict[int, str] = {}
    common: dict[int, set[Key]] = {}
    for seed in sorted(a.values.keys() | b.values.keys()):
        absent = [name for name, v in zip(names, (a, b), strict=True) if seed not in v.values]
        if absent:
            dropped[seed] = f"no {absent[0]} round"
            continue
        shared = a.values[seed].keys() & b.values[seed].keys()
        if shared:
            common[seed] = shared
        else:
            dropped[seed] = "no round at the same labeled count"
    reached = set.intersection(*common.values()) if common else set()
    if common and not reached:  # seeds at different labeled counts: the latest round, with who has it
        latest = max(k for keys in common.values() for k in keys)
        for seed in [s for s, keys in common.items() if latest not in keys]:
            lacking = next(n for n, v in zip(names, (a, b), strict=True) if latest not in v.values[seed])
            dropped[seed] = f"{lacking} has no round {latest[0]}"
            del common[seed]
        reached = {latest}
    keys = select(sorted(reached))
    seeds = sorted(common)
    ahead = [s for s in seeds if keys and max(common[s]) > keys[-1]]
    return Pairing(seeds, dict(sorted(dropped.items())), keys, ahead)


def last_round(keys: list[Key]) -> list[Key]:
    return keys[-1:]


def after_first(keys: list[Key]) -> list[Key]:
    return [k for k in keys if k[0] >= 1]


def evidence(a: Runs, b: Runs, seeds: Sequence[int], key: Key) -> Evidence:
    """A - B at one round over the paired seeds, with the test images where every run recorded them."""
    per_seed = [a.values[s][key] - b.values[s][key] for s in seeds]
    return paired_test(per_seed, stacked([(1.0, a), (-1.0, b)], seeds, key))


def stacked(terms: Sequence[tuple[float, Runs]], seeds: Sequence[int], key: Key) -> np.ndarray | None:
    """Σ weight x correctness per seed and test image, shape (seeds, images); None unless every
    term's run recorded the round's images, all of one test set size."""
    arrays = []
    for s in seeds:
        parts = [r.correct.get(s, {}).get(key) for _, r in terms]
        if any(p is None for p in parts) or len({len(p) for p in parts}) != 1:
            return None
        arrays.append(sum(w * p.astype(float) for (w, _), p in zip(terms, parts, strict=True)))
    return np.stack(arrays) if arrays else None


def dropped_note(dropped: dict[int, str]) -> str:
    if not dropped:
        return ""
    return "unpaired, left out: " + "; ".join(f"seed {s} ({why})" for s, why in dropped.items()) + "."


def ahead_note(p: Pairing) -> str:
    if not p.ahead or not p.keys:
        return ""
    return (f"compared at round {p.keys[-1][0]}, the latest that every paired seed reached "
            f"(seed{'s' if len(p.ahead) > 1 else ''} {', '.join(map(str, p.ahead))} further on).")
