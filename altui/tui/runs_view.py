"""Which runs the runs table shows, in which order and in which columns: pure functions over store
rows (no widgets), so that the table's behaviour is tested without a terminal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from altui.tui.format import SYMBOLS, epoch_bar, failure_reason, status_key, status_text

Run = dict[str, Any]


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    sort: Callable[[Run, float | None], Any]  # (run, its ETA) -> what the column sorts by


def _fraction(run: Run) -> float:
    total = run.get("epochs_total") or 0
    return (run.get("epoch") or 0) / total if total and run["status"] == "running" else -1.0


COLUMNS = {c.key: c for c in (
    Column("id", "id", lambda r, _: r["id"]),
    Column("status", "status", lambda r, _: list(SYMBOLS).index(status_key(r))),
    Column("experiment", "experiment", lambda r, _: r["experiment"]),
    Column("method", "method", lambda r, _: r["method"]),
    Column("seed", "seed", lambda r, _: r["seed"]),
    Column("round", "round", lambda r, _: r["rounds_done"]),
    Column("epochs", "epochs", lambda r, _: _fraction(r)),
    Column("accuracy", "acc", lambda r, _: r.get("accuracy")),
    Column("labeled", "labeled", lambda r, _: r.get("n_labeled")),
    Column("lambda", "λ_t", lambda r, _: r.get("weight_decay")),
    Column("channels", "eff.ch", lambda r, _: r.get("effective_channels")),
    Column("eta", "ETA", lambda r, eta: eta if r["status"] in ("queued", "running") else None),
    Column("elapsed", "elapsed", lambda r, _: r.get("started_at")),
    Column("job", "job@node", lambda r, _: r.get("slurm_job_id")),
    Column("attempt", "attempt", lambda r, _: r.get("attempt")),
    Column("reason", "reason", lambda r, _: failure_reason(r) or None),
)}
ORDER = list(COLUMNS)  # left to right
# Always shown (at 80 columns too), dropped from the end only when even these do not fit.
BASE = ("id", "experiment", "method", "seed", "round", "accuracy", "lambda", "channels", "eta")
# Added as the width allows, in this order (a Slurm run's job and node first, when there is one).
EXTRAS = ("status", "epochs", "labeled", "elapsed", "attempt")
EXPERIMENT_WIDTH = 13  # the experiment's short form before spare width widens it
REASON_WIDTH = 40  # a failure's reason in the table; the context line has it whole
# Each column's width for the values it will hold (a leading space included), reserved from the start,
# so that the columns a width shows stay the same while a run's first values arrive.
RESERVED = {"round": 5, "accuracy": 7, "lambda": 6, "channels": 8, "eta": 6, "labeled": 5, "elapsed": 7,
            "status": 8, "epochs": 1 + len(epoch_bar(30, 100))}
HIDDEN_WHEN_HIDING = ("done", "cancelled")


@dataclass(frozen=True)
class View:
    """What the user chose: an experiment (from the experiments pane), filter words, hidden
    finished runs, and the sort column."""

    experiment: str | None = None
    text: str = ""
    hide_finished: bool = False
    sort: str = "id"
    reverse: bool = False

    def describe(self) -> list[str]:
        parts = []
        if self.experiment:
            parts.append(f"exp {self.experiment}")
        if self.text:
            parts.append(f"/{self.text}")
        if self.hide_finished:
            parts.append("hiding done, cancelled (h)")
        if self.sort != "id" or self.reverse:
            parts.append(f"sort {COLUMNS[self.sort].header}{'▼' if self.reverse else '▲'}")
        return parts


def matches(run: Run, words: list[str]) -> bool:
    """Every filter word is in the run's experiment, method or status."""
    haystack = " ".join((run["experiment"], run["method"], status_text(run), status_key(run))).lower()
    return all(word in haystack for word in words)


def visible(runs: list[Run], view: View, eta: dict[int, float | None]) -> list[Run]:
    """The runs the table shows, in the view's order; runs without a value sort last either way."""
    words = view.text.lower().split()
    shown = [r for r in runs
             if (view.experiment is None or r["experiment"] == view.experiment)
             and not (view.hide_finished and r["status"] in HIDDEN_WHEN_HIDING)
             and matches(r, words)]
    key = COLUMNS[view.sort].sort
    values = {r["id"]: key(r, eta.get(r["id"])) for r in shown}
    known = sorted((r for r in shown if values[r["id"]] is not None), key=lambda r: (values[r["id"]], r["id"]),
                   reverse=view.reverse)
    return known + [r for r in shown if values[r["id"]] is None]


def extras(runs: list[Run]) -> tuple[str, ...]:
    """The optional columns in priority order: a Slurm run's job first, when any run has one, then
    why runs failed, when any did; the epochs only while a run is running or queued to run."""
    first = (("job",) if any(r.get("slurm_job_id") for r in runs) else ()) + (
        ("reason",) if any(r["status"] == "failed" for r in runs) else ())
    working = any(r["status"] in ("running", "queued") for r in runs)
    return first + tuple(k for k in EXTRAS if k != "epochs" or working)


def choose_columns(widths: dict[str, int], total: int, extra: tuple[str, ...]) -> tuple[list[str], int]:
    """The columns that fit in `total` characters, left to right, and the characters left over.
    `widths`: each column's widest cell or header, its leading space included."""
    chosen = list(BASE)
    while len(chosen) > 1 and sum(widths[k] for k in chosen) > total:
        chosen.pop()
    used = sum(widths[k] for k in chosen)
    for key in extra:
        if used + widths[key] <= total:
            chosen.append(key)
            used += widths[key]
    return [k for k in ORDER if k in chosen], total - used
