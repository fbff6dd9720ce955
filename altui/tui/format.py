"""Pure text formatting of store rows for the dashboard's tables (no widgets, no store)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from altui.store import parse_time

BAR_WIDTH = 6


def num(value: Any, spec: str = "") -> str:
    return "" if value is None else format(value, spec)


def duration(seconds: float | None) -> str:
    """Short durations for narrow columns: 42s, 3m05s, 2h07m."""
    if seconds is None:
        return ""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def epoch_bar(epoch: int | None, total: int | None, width: int = BAR_WIDTH) -> str:
    """The current round's epochs as text: `████░░ 12/30`."""
    if not total:
        return ""
    done = min(max(epoch or 0, 0), total)
    filled = round(width * done / total)
    return f"{'█' * filled}{'░' * (width - filled)} {done}/{total}"


def elapsed(run: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the run started, up to its end when it has ended; none while it waits."""
    start = parse_time(run.get("started_at"))
    if start is None or run["status"] == "queued":
        return None
    end = now if run["status"] == "running" else parse_time(run.get("finished_at")) or now
    return (end - start).total_seconds()


def progress(run: dict[str, Any]) -> float:
    """Fraction of the run done, counting the current round's finished epochs."""
    rounds = run.get("rounds_total") or 0
    if not rounds:
        return 0.0
    epochs = run.get("epochs_total") or 0
    partial = (run.get("epoch") or 0) / epochs if epochs else 0.0
    return min(1.0, ((run.get("rounds_done") or 0) + partial) / rounds)


def remaining(run: dict[str, Any], now: datetime) -> float | None:
    """A running run's time left, assuming the rest goes as fast as what is done (rounds grow, so
    this is a lower bound)."""
    if run["status"] != "running":
        return None
    spent, done = elapsed(run, now), progress(run)
    if spent is None or done <= 0:
        return None
    return spent * (1 - done) / done


def run_cells(run: dict[str, Any], now: datetime) -> dict[str, str]:
    """The runs table's cells of one run, by column key."""
    eff, total = run.get("effective_channels"), run.get("total_channels")
    return {
        "id": str(run["id"]),
        "status": run["status"],
        "experiment": run["experiment"],
        "method": run["method"],
        "seed": str(run["seed"]),
        "round": f"{run['rounds_done']}/{num(run.get('rounds_total'))}",
        "labeled": num(run.get("n_labeled")),
        "accuracy": num(run.get("accuracy"), ".4f"),
        "lambda": num(run.get("weight_decay"), ".3g"),
        "channels": "" if eff is None else f"{eff}/{total}",
        "elapsed": duration(elapsed(run, now)),
        "remaining": duration(remaining(run, now)),
        "epochs": epoch_bar(run.get("epoch"), run.get("epochs_total")) if run["status"] == "running" else "",
    }
