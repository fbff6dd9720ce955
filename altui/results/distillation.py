"""The report's "Distillation" section: the teacher diagnostics (store table `teacher`) per method,
sweep point and round, mean over seeds, beside the student's test accuracy, so that a reader sees
where distillation helps and why (docs/method.md, "Why distillation helps or hurts")."""

from __future__ import annotations

import json
from collections import defaultdict
from statistics import fmean
from typing import Any

from altui.store import Store

# (column, header, as a percentage)
COLUMNS = (
    ("accuracy", "student test", True),
    ("teacher_test_accuracy", "teacher test", True),
    ("teacher_prev_accuracy", "teacher D_{t-1}", True),
    ("teacher_labeled_accuracy", "teacher D_t", True),
    ("teacher_picks_accuracy", "teacher new picks", True),
    ("teacher_picks_confidence", "teacher max-p@T new picks", True),
    ("student_prev_fit", "student fit D_{t-1}", True),
    ("student_picks_fit", "student fit new picks", True),
    ("train_ce", "CE (last epoch)", False),
    ("train_kd", "α·T²·KL (last epoch)", False),
)


def _point(sweep_json: str) -> str:
    sweep = json.loads(sweep_json or "{}")
    return ", ".join(f"{k}={v}" for k, v in sweep.items()) or "–"


def _mean(values: list[Any], percent: bool) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "–"
    m = fmean(present)
    return f"{100 * m:.1f}" if percent else f"{m:.3f}"


def grouped(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    """The rows of each (method, sweep point, round), in the order they first appear."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], _point(r["sweep_json"]), r["round"])].append(r)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])))


def table(rows: list[dict[str, Any]]) -> str:
    """One Markdown row per method, sweep point and round: means over seeds (accuracies in %)."""
    header = ["Method", "Sweep point", "Round", "N_t", "Seeds", *(h for _, h, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|---|---|---:|---:|---:|" + "---:|" * len(COLUMNS)]
    for (method, point, round_), group in grouped(rows).items():
        cells = [_mean([r[c] for r in group], pct) for c, _, pct in COLUMNS]
        lines.append(f"| {method} | {point} | {round_} | {group[0]['n_labeled']} | {len(group)} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def section(store: Store, experiment: str) -> list[str]:
    """The report's section; none when the experiment has no round with a teacher row."""
    rows = store.teacher_rows(experiment)
    if not rows:
        return []
    return [
        "## Distillation\n",
        "Per round t ≥ 1, mean over seeds (%). The teacher is the previous round's model: the teacher of "
        "the loss with distillation (KD1, KD2), and for every method the model that picked the round's new "
        "images. Its accuracy on those new picks and its confidence there (mean max-probability at T; "
        "T = 1 without distillation) show how wrong and how sure it is where the student learns; the "
        "student's fit of the new picks' labels shows whether the KD term outweighed them (with CE alone "
        "it fits them all). CE and α·T²·KL are the last epoch's mean loss terms.\n",
        table(rows),
    ]
