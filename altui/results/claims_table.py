"""The claims as people read them: the Markdown table of `altui claims` and the report, and the cells
that the dashboard's compare line shares with it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from altui.results.claims import ACCURACY, BEST_DECAY, ClaimRow, format_p
from altui.results.stats import ALPHA, MIN_SEEDS


def format_interval(c: ClaimRow) -> str:
    """Accuracy in percentage points with 2 decimals, channels with 1: "+1.23 pp [+0.40, +2.10]"."""
    if c.mean_difference is None:
        return "–"
    scale, digits, unit = (1, 1, "") if c.metric not in (ACCURACY, BEST_DECAY) else (100, 2, " pp")
    mean, low, high = (scale * v for v in (c.mean_difference, c.ci_low, c.ci_high))
    return f"{mean:+.{digits}f}{unit} [{low:+.{digits}f}, {high:+.{digits}f}]"


def format_difference(c: ClaimRow) -> str:
    if c.metric == BEST_DECAY:
        argmax = "argmax λ by N: " + (", ".join(f"{d['weight_decay']:g}" for d in c.details) or "–")
        return argmax + (f"; contrast {format_interval(c)}" if c.mean_difference is not None else "")
    return format_interval(c)


def format_rounds(c: ClaimRow) -> str:
    if c.metric == BEST_DECAY:
        return f"0 at N = {', '.join(map(str, c.n_labeled))}"
    if not c.rounds:
        return "–"
    if len(c.rounds) == 1:
        return f"{c.rounds[0]} ({c.n_labeled[0]} labels)"
    return f"{c.rounds[0]}–{c.rounds[-1]} ({c.n_labeled[0]}–{c.n_labeled[-1]} labels)"


def format_seeds(c: ClaimRow) -> str:
    return f"{len(c.seeds)} ({len(c.dropped_seeds)} dropped)" if c.dropped_seeds else str(len(c.seeds))


def format_needed(c: ClaimRow) -> str:
    return "–" if c.seeds_needed is None else str(c.seeds_needed)


INTRO = (
    "Paired over seeds: per seed, the difference between the two methods at the same round (same index, "
    "same labeled count), compared at the latest round that every paired seed reached. The test: Student's "
    "t on the mean difference, its variance from the seeds and, where the rounds recorded which test images "
    "each model got right, from the test images (another test set of this size would move it too). p is "
    f"two-sided and Holm-adjusted over the claim's rows; **supported**: p ≤ {ALPHA:g} and A above B; "
    f"**contradicted**: p ≤ {ALPHA:g} and A below B; **inconclusive** otherwise, or with fewer than "
    f"{MIN_SEEDS} paired seeds (the reason is below the table). The interval is the 95% t interval of the "
    "shown comparison; *Seeds to decide* is the fewest seeds at which the observed difference, with the "
    "observed spread, would be decided. Accuracy differences in percentage points (pp). Statistic, "
    "calibration and limits: docs/export.md.\n"
)


def markdown(claims: Sequence[ClaimRow], methods: Iterable[str] = ()) -> str:
    """The claims as a Markdown table, each row's reason and notes below it, and claim 6's argmax tables."""
    if not claims:
        named = ", ".join(dict.fromkeys(methods)) or "none with a recorded round"
        return (INTRO + "\nNo claim of the paper can be checked here: each compares recorded rounds of the "
                "paper's methods, found by name (WS+init, Entropy+init, WS+init+KD1, ...), or a sweep of "
                f"`initial` x `weight_decay`; this experiment's methods: {named}.\n")
    lines = ["| # | Claim | Paper | Rounds | Mean difference [95% interval] | Test | p | Seeds | Seeds to decide "
             "| Verdict |", "|---|---|---|---|---|---|---:|---:|---:|---|"]
    for c in claims:
        lines.append(f"| {c.claim} | {c.text} | {c.section} | {format_rounds(c)} | {format_difference(c)} | "
                     f"{c.test} | {format_p(c.p_value)} | {format_seeds(c)} | {format_needed(c)} | "
                     f"**{c.verdict}** |")
    parts = [INTRO, "\n".join(lines) + "\n"]
    notes = [f"- Claim {c.claim} ({c.text}): " + " ".join(x for x in (c.reason, c.note) if x)
             for c in claims if c.reason or c.note]
    if notes:
        parts.append("\n".join(notes) + "\n")
    for c in claims:
        if c.metric == BEST_DECAY:
            rows = [f"| {d['n_labeled']} | {d['weight_decay']:g} | {100 * d['accuracy']:.2f} | {d['seeds']} | "
                    f"{d['product']:.4g} |" for d in c.details]
            parts.append(f"Claim 6, {c.text}:\n\n| N | argmax λ | accuracy (%) | seeds | λ·N |\n"
                         "|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)
