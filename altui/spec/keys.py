"""What experiments.toml may hold: the keys of each table, the TOML type of each run setting and its
allowed values, and the check of one value, with messages that say what is allowed.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from typing import Any

from altui.al.config import ACQUISITIONS, DATASETS, DISTILLS, INITS, MAX_SEED, MODELS, WD_SCHEDULES, valid_device
from altui.spec.limits import MAX_STRING

# ----------------------------------------------------------------------------------------------
# What the format allows

TOP_KEYS = ("defaults", "experiment")

# The TOML type of each run setting. `seed` comes from `seeds`, `extra` from `path`.
FIELD_KINDS: dict[str, str] = {
    "dataset": "str", "model": "str", "data_root": "str", "download": "bool",
    "rounds": "int", "initial": "int", "budget": "int",
    "acquisition": "str", "weight_decay": "float", "wd_schedule": "str", "decay_bn": "bool",
    "init": "str", "distill": "str", "kd_alpha": "float", "kd_temperature": "float",
    "epochs": "int", "lr": "float", "milestones": "ints", "lr_gamma": "float", "momentum": "float",
    "batch_size": "int", "augment": "bool",
    "pool_subset": "int", "subset_seed": "int", "ll_subset": "int", "ll_stop_epoch": "int",
    "ll_margin": "float", "ll_weight": "float",
    "mc_samples": "int", "mc_dropout": "float", "mc_dropout_train": "bool",
    "device": "str", "eval_batch_size": "int", "compile": "bool|auto",
    "threads": "int",
}
# Settings of the file that are no run setting: each becomes run settings when the runs are built.
# lambda_n: λ_0·N_0, an alternative to weight_decay (λ_0 = lambda_n / initial; altui/spec/decay.py).
SPEC_KINDS: dict[str, str] = {"lambda_n": "float"}
KINDS = {**FIELD_KINDS, **SPEC_KINDS}
# What a method table may set (besides `name` and `preset`): the method, not the protocol or training.
METHOD_FIELDS = (
    "acquisition", "weight_decay", "wd_schedule", "init", "distill", "kd_alpha", "kd_temperature",
    "decay_bn", "pool_subset", "subset_seed", "ll_subset", "ll_stop_epoch", "ll_margin", "ll_weight",
    "mc_samples", "mc_dropout", "mc_dropout_train",
)
EXPERIMENT_KEYS = ("name", "methods", "seeds", "path", "slurm", *KINDS)  # slurm: altui/spec/slurm.py
DEFAULTS_KEYS = tuple(k for k in EXPERIMENT_KEYS if k not in ("name", "methods"))
METHOD_KEYS = ("name", "preset", *METHOD_FIELDS)
PATH_DATASETS = ("npz", "imagefolder")  # the data sets read from the user's `path`

CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS, "model": MODELS, "acquisition": ACQUISITIONS,
    "wd_schedule": WD_SCHEDULES, "init": INITS, "distill": DISTILLS,
}
_AT_LEAST_1 = (lambda v: v >= 1, "an integer >= 1")
_NOT_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "rounds": _AT_LEAST_1, "initial": _AT_LEAST_1, "budget": _AT_LEAST_1, "epochs": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1, "eval_batch_size": _AT_LEAST_1, "ll_subset": _AT_LEAST_1,
    "pool_subset": (lambda v: v >= 0, "an integer >= 0 (0: the whole pool)"),
    "subset_seed": (lambda v: v >= 0, "an integer >= 0"),
    "ll_stop_epoch": (lambda v: v >= 0, "an integer >= 0"),
    "weight_decay": _NOT_NEGATIVE, "ll_margin": _NOT_NEGATIVE, "ll_weight": _NOT_NEGATIVE,
    "lr": (lambda v: v > 0, "a number > 0"),
    "lr_gamma": (lambda v: v > 0, "a number > 0"),
    "kd_alpha": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "kd_temperature": (lambda v: 0.01 <= v <= 1000, "a number in [0.01, 1000] (the logits are divided by T, "
                                                   "the loss multiplied by T²)"),
    "momentum": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "threads": (lambda v: v >= 0, "an integer >= 0 (0: the process's default)"),
    "mc_samples": (lambda v: v >= 2, "an integer >= 2: BALD's dropout samples"),
    "mc_dropout": (lambda v: 0 <= v < 1, "a number in [0, 1): the dropout rate before the classifier"),
    "lambda_n": (lambda v: v > 0, "a number > 0 (λ_0·N_0: λ_0 = lambda_n / initial)"),
}
# The largest value of each integer setting: what can work (a pool of more than 10**9 images does not fit
# in memory, each round labels at least one sample), so that a typo of 2**64 is refused, not run.
INT_MAX: dict[str, int] = {
    "rounds": 100_000, "initial": 10**9, "budget": 10**9, "pool_subset": 10**9, "ll_subset": 10**9,
    "epochs": 1_000_000, "ll_stop_epoch": 1_000_000, "milestones": 1_000_000,
    "batch_size": 1 << 20, "eval_batch_size": 1 << 20, "subset_seed": MAX_SEED,
    "mc_samples": 10_000,  # BALD's dropout samples: each is a pass over the pool's features
    "threads": 4096,  # intra-op threads of a run
}
_KIND_TEXT = {
    "str": "a string", "bool": "true or false", "int": "an integer", "float": "a number",
    "ints": "a list of integers", "bool|auto": 'true, false or "auto"',
}
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9._+-]+")  # experiment names: safe in run names, paths and shells
METHOD_NAME = re.compile(r"[^/\s]+")  # method names: "/" separates the parts of a run name; printable


# ----------------------------------------------------------------------------------------------
# Values


def unknown_choice(what: str, value: Any, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {what} {value!r}{hint} allowed: {', '.join(allowed)}"


def count_of(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def show(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array",
             dict: "a table"}
    text = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{text} ({kinds.get(type(value), type(value).__name__)})"


def has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "bool|auto":
        return isinstance(value, bool) or value == "auto"
    if isinstance(value, bool):  # TOML's true is no number
        return False
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":  # 1 is a fine weight decay
        return isinstance(value, (int, float))
    if kind == "ints":
        return isinstance(value, list) and all(has_kind(v, "int") for v in value)
    return isinstance(value, str)


def value_error(key: str, value: Any) -> str | None:
    """What is wrong with one value of a run setting (or `path`), or None."""
    kind = KINDS.get(key, "str")
    if not has_kind(value, kind):
        return f"expected {_KIND_TEXT[kind]}, got {show(value)}"
    if kind == "float" and not math.isfinite(value):  # JSON has no inf or nan, nor has training
        return f"{value!r} is not finite; allowed: {RANGES[key][1] if key in RANGES else 'a finite number'}"
    if kind == "str" and not value.isprintable():  # no escape sequences into terminals and run names
        return f"{show(value)} holds control or other unprintable characters; allowed: printable characters"
    if kind == "str" and len(value) > MAX_STRING:
        return f"a string of {len(value):,} characters; allowed: at most {MAX_STRING:,}"
    too_big = [v for v in (value if kind == "ints" else [value] if kind == "int" else []) if v > INT_MAX.get(key, v)]
    if too_big:
        low = RANGES[key][1] if key in RANGES else "an integer >= 1"
        return f"{too_big[0]!r} is out of range; allowed: {low} and at most {INT_MAX[key]:,}"
    if key in CHOICES and value not in CHOICES[key]:
        return unknown_choice(key, value, CHOICES[key])
    if key == "device" and not valid_device(value):
        return f"unknown device {value!r}; allowed: auto, cpu, cuda, cuda:N (N: digits 0-9)"
    if key in RANGES and not RANGES[key][0](value):
        return f"{value!r} is out of range; allowed: {RANGES[key][1]}"
    if key == "milestones" and (any(m < 1 for m in value) or value != sorted(value)):
        return f"{value} is not allowed; allowed: increasing epochs >= 1, e.g. [150, 250]"
    return None


def is_sweep(key: str, value: Any) -> bool:
    """A list for a scalar setting, or a list of lists for `milestones`."""
    if key == "milestones":
        return isinstance(value, list) and any(isinstance(v, list) for v in value)
    return key in KINDS and isinstance(value, list)


def normalized(key: str, value: Any) -> Any:
    """Floats for float settings (so that 1 and 1.0 name the same run)."""
    return float(value) if KINDS.get(key) == "float" and has_kind(value, "int") else value


def format_value(value: Any) -> str:
    """A value in a run name: shortest form (0.1, 200, 1e-05), never a "/"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value).replace("/", "_")
