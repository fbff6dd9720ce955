"""Pure text formatting of store rows for the dashboard (no widgets, no store)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

from altui.store import parse_time

BAR_WIDTH = 6
MINI_BAR = 4  # the current round's epochs beside the ETA, where every column counts
EIGHTHS = " ▏▎▍▌▋▊▉"
# One symbol per status, also in the header's counts; "pending": queued and waiting in Slurm.
SYMBOLS = {"running": "▶", "queued": "…", "pending": "◌", "done": "✓", "failed": "✗", "cancelled": "⊘"}
CANCELLABLE, RETRYABLE = ("queued", "running"), ("failed", "cancelled")  # what cancel and retry change
CANCEL_NOTE = "Completed rounds are kept; a running run stops within seconds."
STATUS_STYLE = {"running": "bold green", "queued": "dim", "pending": "dim", "done": "",
                "failed": "bold red", "cancelled": "yellow"}


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


def mini_bar(fraction: float, width: int = MINI_BAR) -> str:
    """A bar in eighths of a character: 4 characters tell 32 steps apart."""
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width, "·")


def pending(run: dict[str, Any]) -> bool:
    """Queued with a Slurm job id: submitted, waiting in Slurm's queue for a node."""
    return run["status"] == "queued" and bool(run.get("slurm_job_id"))


def status_key(run: dict[str, Any]) -> str:
    """The status as the dashboard tells it: `pending` for a queued run that Slurm holds."""
    return "pending" if pending(run) else run["status"]


def status_text(run: dict[str, Any]) -> str:
    return "queued·pd" if pending(run) else run["status"]


def job_text(run: dict[str, Any]) -> str:
    """A Slurm run's job id and, once it runs, its node (`4242@node3`); while it is pending, Slurm's
    reason (`4242 (Resources)`)."""
    job = run.get("slurm_job_id")
    if not job:
        return ""
    if run.get("node"):
        return f"{job}@{run['node']}"
    reason = run.get("slurm_reason") if pending(run) else None
    return f"{job} ({reason})" if reason else str(job)


def elapsed(run: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the run started, up to its end when it has ended; none while it waits."""
    start = parse_time(run.get("started_at"))
    if start is None or run["status"] == "queued":
        return None
    end = now if run["status"] == "running" else parse_time(run.get("finished_at")) or now
    return (end - start).total_seconds()


def eta_text(run: dict[str, Any], eta: float | None) -> str:
    """The ETA column: a running run's epoch bar and time left; a queued one's time until it is done
    (its wait included); nothing for the rest."""
    if run["status"] == "running":
        total = run.get("epochs_total") or 0
        bar = mini_bar((run.get("epoch") or 0) / total) if total else " " * MINI_BAR
        return f"{bar} {duration(eta) or '?'}"
    if run["status"] == "queued":
        return f"{' ' * MINI_BAR} {duration(eta) or '?'}"
    return ""


def run_cells(run: dict[str, Any], now: datetime, eta: float | None = None) -> dict[str, str]:
    """The runs table's cells of one run, by column key (the experiment's short form is the
    table's business: it depends on the other names)."""
    eff, total = run.get("effective_channels"), run.get("total_channels")
    return {
        "id": str(run["id"]),
        "status": status_text(run),
        "experiment": run["experiment"],
        "method": run["method"],
        "seed": str(run["seed"]),
        "round": f"{run['rounds_done']}/{num(run.get('rounds_total'))}",
        "labeled": num(run.get("n_labeled")),
        "accuracy": num(run.get("accuracy"), ".4f"),
        "lambda": num(run.get("weight_decay"), ".3g"),
        "channels": "" if eff is None else f"{eff}/{total}",
        "elapsed": duration(elapsed(run, now)),
        "eta": eta_text(run, eta),
        "epochs": epoch_bar(run.get("epoch"), run.get("epochs_total")) if run["status"] == "running" else "",
        "job": job_text(run),
        "attempt": str(run.get("attempt") or 0),
        "reason": failure_reason(run),
    }


REASON_WIDTH = 200


def failure_reason(run: dict[str, Any], width: int = REASON_WIDTH) -> str:
    """Why a failed run failed, in one line: the last line of its error (a traceback's exception);
    "" for a run that did not fail or left no error."""
    if run.get("status") != "failed":
        return ""
    lines = [line for line in (run.get("error") or "").splitlines() if line.strip()]
    if not lines:
        return "no reason recorded (altui logs ID)"
    line = "".join(ch if ch.isprintable() else " " for ch in " ".join(lines[-1].split()))
    return line if len(line) <= width else line[: width - 1] + "…"


def run_target(run: dict[str, Any]) -> str:
    """A run as a confirmation lists it; a running one says what cancelling it loses."""
    line = f"#{run['id']} {run['name']} · {status_text(run)}"
    if run["status"] == "running" and run.get("epoch"):
        line += f" (round {run['rounds_done']} is {epoch_bar(run['epoch'], run.get('epochs_total'))} in)"
    return line


def status_counts(runs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(status key, count) in SYMBOLS' order, the statuses that have runs."""
    counts = Counter(status_key(r) for r in runs)
    return [(key, counts[key]) for key in SYMBOLS if counts[key]]


# ---- short experiment names ------------------------------------------------------------------

_WORD = re.compile(r"([A-Za-z]*)(.*)")


def _words(name: str) -> list[tuple[str, str]]:
    """(letters, rest) of each word, separators as words of their own: cifar10 -> (cifar, 10)."""
    parts = re.split(r"([-_/.])", name)  # words at even positions, separators between them
    return [_WORD.fullmatch(p).groups() if i % 2 == 0 else (p, "") for i, p in enumerate(parts)]


def _capped(name: str, cap: int) -> str:
    """The name with every word's letters cut to `cap`, digits and separators kept."""
    return "".join((letters if i % 2 else letters[:cap]) + rest for i, (letters, rest) in enumerate(_words(name)))


def _cap(name: str, width: int) -> int:
    """The most letters per word that fit the name in `width` characters (at least 1)."""
    longest = max(len(letters) for letters, _ in _words(name))
    return next((cap for cap in range(longest, 0, -1) if len(_capped(name, cap)) <= width), 1)


def _cut(name: str, width: int, head: int) -> str:
    return name if len(name) <= width else name[:head] + "…" + name[len(name) - (width - 1 - head):]


def short_names(names: list[str], width: int) -> dict[str, str]:
    """A unique form of each name in at most `width` characters: the name when it fits, else its
    words cut to the same number of letters (digits kept: cifar10-resnet18-k1000 -> c10-r18-k1000;
    names with the same first word alike), else cut in the middle where that tells them apart."""
    width = max(width, 4)
    long = [n for n in names if len(n) > width]
    family: dict[str, int] = {}  # names that start alike are cut alike: c10-r18-k1000, c10-r18-k250
    for n in long:
        first = re.split(r"[-_/.]", n)[0]
        family[first] = min(family.get(first, len(n)), _cap(n, width))
    result = {n: _capped(n, family[re.split(r"[-_/.]", n)[0]]) if n in long else n for n in names}
    for name, short in result.items():
        if len(short) > width:
            result[name] = _cut(short, width, (width - 1) * 2 // 3)
    for _ in range(3):  # names that still collide: try other cuts of the middle, then number them
        clashes = {s for s, c in Counter(result.values()).items() if c > 1}
        if not clashes:
            break
        for name in [n for n, s in result.items() if s in clashes]:
            forms = (_cut(name, width, head) for head in range(1, width - 1))
            taken = set(result.values())
            result[name] = next((f for f in forms if f not in taken), result[name])
    seen: Counter[str] = Counter()
    for name in sorted(result):  # the last resort keeps the table honest: never two rows alike
        short = result[name]
        seen[short] += 1
        if list(result.values()).count(short) > 1 and seen[short] > 1:
            tag = f"~{seen[short]}"
            result[name] = short[: width - len(tag)] + tag
    return result
