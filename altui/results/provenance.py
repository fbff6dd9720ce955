"""Whether runs that are compared ran the same way: their provenance (torch and CUDA versions, device,
threads, deterministic flags, compile, altui version; store `runs` columns) and the differences to warn
about before any comparison (report, claims, the dashboard's compare line, `altui diff`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from altui.store import Store

FIELDS = Store.PROVENANCE


def _ids(ids: list[int]) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:4])
    return shown + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")


def format_value(field: str, value: Any) -> str:
    """A provenance value as the warnings name it (compile on/off, none for NULL)."""
    if value is None:
        return "none"
    if field == "compiled":
        return "on" if value else "off"
    return str(value)


def provenance_differences(runs: Iterable[dict[str, Any]]) -> list[str]:
    """One line per provenance field in which the runs (store `runs` rows) differ, naming the values
    and their runs ("threads: 1 (#1, #2), 2 (#3)"); empty when they ran alike. Runs recorded before
    provenance was (torch_version NULL) are left out: nothing is known of them. Pure: the dashboard's
    compare mode calls it on the runs it shows."""
    recorded = [r for r in runs if r.get("torch_version") is not None]
    lines = []
    for field in FIELDS:
        by_value: dict[Any, list[int]] = defaultdict(list)
        for r in recorded:
            by_value[r.get(field)].append(r["id"])
        if len(by_value) > 1:
            values = (f"{format_value(field, v)} ({_ids(ids)})" for v, ids in by_value.items())
            lines.append(f"{field}: " + ", ".join(values))
    return lines


def warning(runs: Iterable[dict[str, Any]]) -> str | None:
    """A one-line warning naming every difference, or None when the runs ran alike."""
    diffs = provenance_differences(runs)
    if not diffs:
        return None
    return "the compared runs differ in provenance, so their numbers may differ for that alone: " + "; ".join(diffs)
