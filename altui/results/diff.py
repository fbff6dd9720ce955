"""Two runs side by side (`altui diff`, the dashboard's two marked runs): the settings and provenance
in which they differ, then both runs' numbers per round (accuracy, λ_t, effective channels, and the
teacher diagnostics where a round has a teacher)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from altui.results.provenance import FIELDS as PROVENANCE_FIELDS
from altui.results.provenance import format_value
from altui.store import Store, StoreError

# per-round metrics: (key, column header, format); rounds first, then the teacher table (rounds >= 1)
ROUND_METRICS = (
    ("n_labeled", "labels", "d"),
    ("accuracy", "accuracy", ".4f"),
    ("weight_decay", "λ_t", ".4g"),
    ("effective_channels", "channels", "d"),
)
TEACHER_METRICS = (
    ("teacher_test_accuracy", "teacher test", ".3f"),
    ("teacher_prev_accuracy", "teacher D_t-1", ".3f"),
    ("teacher_labeled_accuracy", "teacher D_t", ".3f"),
    ("teacher_picks_accuracy", "teacher picks", ".3f"),
    ("temperature", "T", "g"),  # the teacher's confidence is its mean max-probability at T (1 without KD)
    ("teacher_picks_confidence", "teacher conf", ".3f"),
    ("student_prev_fit", "fit D_t-1", ".3f"),
    ("student_picks_fit", "fit picks", ".3f"),
)
FORMATS = {key: spec for key, _, spec in (*ROUND_METRICS, *TEACHER_METRICS)}
HEADERS = {key: header for key, header, _ in (*ROUND_METRICS, *TEACHER_METRICS)}


@dataclass(frozen=True)
class RunSide:
    id: int
    name: str
    experiment: str
    method: str
    status: str


@dataclass(frozen=True)
class Difference:
    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class RoundPair:
    round: int
    a: dict[str, float | int | None]  # metric -> value, None where the run has no such round or value
    b: dict[str, float | int | None]


@dataclass(frozen=True)
class RunDiff:
    a: RunSide
    b: RunSide
    settings: list[Difference]  # the experiment, method and every run setting (spec_json) that differs
    provenance: list[Difference]  # what can change the numbers besides the settings (docs/method.md)
    metrics: list[str]  # the per-round metrics present, ROUND_METRICS then TEACHER_METRICS keys
    rounds: list[RoundPair]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _settings(run: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = json.loads(run["spec_json"] or "{}")
    except json.JSONDecodeError:  # a store written before JSON was checked
        spec = {}
    return {"experiment": run["experiment"], "method": run["method"], **spec}


def _differences(a: dict[str, Any], b: dict[str, Any], keys: list[str] | tuple[str, ...]) -> list[Difference]:
    return [Difference(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def _per_round(store: Store, run_id: int) -> dict[int, dict[str, Any]]:
    rows = {r["round"]: {k: r[k] for k, _, _ in ROUND_METRICS} for r in store.rounds(run_id)}
    for t in store.teacher(run_id):
        rows.setdefault(t["round"], {}).update({k: t[k] for k, _, _ in TEACHER_METRICS})
    return rows


def _run(store: Store, run_id: int) -> dict[str, Any]:
    run = store.run(run_id)
    if run is None:
        raise StoreError(f"no run {run_id} in {store.path}")
    experiment = store.db.conn.execute("SELECT name FROM experiments WHERE id = ?",
                                       (run["experiment_id"],)).fetchone()
    return {**run, "experiment": experiment[0] if experiment else None}


def diff_runs(store: Store, a: int | str, b: int | str) -> RunDiff:
    """Runs `a` and `b` (ids or names) compared: what differs in how they ran, and their rounds."""
    id_a, id_b = store.resolve([str(a), str(b)])
    run_a, run_b = _run(store, id_a), _run(store, id_b)
    settings_a, settings_b = _settings(run_a), _settings(run_b)
    keys = list(dict.fromkeys([*settings_a, *settings_b]))
    rounds_a, rounds_b = _per_round(store, id_a), _per_round(store, id_b)
    present = {k for rows in (rounds_a, rounds_b) for row in rows.values() for k, v in row.items() if v is not None}
    metrics = [k for k in FORMATS if k in present]
    pairs = [RoundPair(t, {k: rounds_a.get(t, {}).get(k) for k in metrics},
                       {k: rounds_b.get(t, {}).get(k) for k in metrics})
             for t in sorted(set(rounds_a) | set(rounds_b))]
    # provenance only where both recorded it: a run recorded before altui did (NULL) tells nothing
    recorded = run_a["torch_version"] is not None and run_b["torch_version"] is not None
    return RunDiff(
        a=_side(run_a), b=_side(run_b),
        settings=_differences(settings_a, settings_b, keys),
        provenance=_differences(run_a, run_b, PROVENANCE_FIELDS) if recorded else [],
        metrics=metrics, rounds=pairs,
    )


def _side(run: dict[str, Any]) -> RunSide:
    return RunSide(run["id"], run["name"], run["experiment"], run["method"], run["status"])


# ---- as text ------------------------------------------------------------------------------------

def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    return format(value, FORMATS[key])


def _value(key: str, value: Any) -> str:
    if key in PROVENANCE_FIELDS or value is None or isinstance(value, str):
        return format_value(key, value)
    return json.dumps(value, ensure_ascii=False)  # lists and booleans as experiments.toml writes them


def _chunks(metrics: list[str], widths: dict[str, int], room: int) -> list[list[str]]:
    """Metrics in groups whose columns (A and B each) fit in `room` characters; at least one each."""
    groups: list[list[str]] = [[]]
    used = 0
    for key in metrics:
        need = 2 * (widths[key] + 2)
        if groups[-1] and used + need > room:
            groups.append([])
            used = 0
        groups[-1].append(key)
        used += need
    return groups


def _table(diff: RunDiff, metrics: list[str], width: int) -> list[str]:
    rows = [(str(p.round), {k: (_cell(k, p.a[k]), _cell(k, p.b[k])) for k in metrics}) for p in diff.rounds]
    widths = {k: max(len(HEADERS[k]) + 2, *(len(c) for _, cells in rows for c in cells[k])) for k in metrics}
    lines = []
    for group in _chunks(metrics, widths, max(width - 7, 1)):
        lines.append("round  " + "  ".join(f"{HEADERS[k] + ' A':>{widths[k]}}  {HEADERS[k] + ' B':>{widths[k]}}"
                                            for k in group))
        for t, cells in rows:
            if all(c == "–" for k in group for c in cells[k]):  # e.g. round 0 of the teacher columns
                continue
            lines.append(f"{t:<5}  " + "  ".join(f"{cells[k][0]:>{widths[k]}}  {cells[k][1]:>{widths[k]}}"
                                                 for k in group))
        lines.append("")
    return lines[:-1]


def diff_lines(diff: RunDiff, width: int = 100) -> list[str]:
    """The comparison as lines of at most `width` characters where the data allow (a run's name or a
    setting's value is never cut): the runs, what differs in their settings and provenance, and the
    metrics per round, A beside B, in as many tables as the width needs."""
    lines = [f"A: #{diff.a.id} {diff.a.name} ({diff.a.status})", f"B: #{diff.b.id} {diff.b.name} ({diff.b.status})", ""]
    for title, differences in (("settings", diff.settings), ("provenance", diff.provenance)):
        if not differences:
            lines.append(f"{title}: the same" + (" (or not recorded)" if title == "provenance" else ""))
            continue
        lines.append(f"{title} that {'differ' if title == 'settings' else 'differs'}:")
        key_width = max(len(d.key) for d in differences)
        lines += [f"  {d.key:<{key_width}}  A {_value(d.key, d.a)}  B {_value(d.key, d.b)}" for d in differences]
    lines.append("")
    if not diff.rounds:
        return [*lines, "no rounds recorded in either run"]
    return [*lines, *_table(diff, diff.metrics, width)]
