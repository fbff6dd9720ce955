"""Claim 7, beyond the paper: the paper's method is independent of the acquisition (section 3), so
WS+init+KD should improve over the same acquisition without it, for every acquisition. Which methods of an
experiment make that comparison, from their run settings."""

from __future__ import annotations

from typing import Any

SECTION = "§3 (beyond: any acquisition)"
KEYS = ("acquisition", "wd_schedule", "init", "distill")


def is_ours(s: dict[str, Any]) -> bool:
    """WS+init+KD: the scheduled decay, a new initialisation each round, distillation."""
    return s.get("wd_schedule") in ("inverse", "exact") and s.get("init") in ("fresh", "same") \
        and s.get("distill") in ("kd1", "kd2")


def is_without(s: dict[str, Any]) -> bool:
    """The same acquisition without the method: a fixed decay and no distillation (any initialisation)."""
    return s.get("wd_schedule") == "fixed" and s.get("distill") == "none"


PAPERS = ("entropy",)  # the paper's own acquisition: claims 1-5 test it


def acquisition_pairs(settings: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(method, baseline, acquisition) for every WS+init+KD method and every method of the same
    acquisition without it, in the experiment's method order; none when every such pair uses the paper's
    own acquisition (the paper's experiments keep claims 1-6). `settings`: per method, KEYS."""
    pairs = [(m, b, s["acquisition"]) for m, s in settings.items() if is_ours(s)
             for b, t in settings.items() if is_without(t) and t.get("acquisition") == s["acquisition"]]
    return pairs if any(a not in PAPERS for _, _, a in pairs) else []
