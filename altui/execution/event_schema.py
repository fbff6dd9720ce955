"""The schema of a Slurm events line (format: docs/worker.md). The events file is written on another
machine and anyone who can write the run folder can edit it, so every line is checked here, whole,
before the head writes anything of it: its kind, its fields' types and ranges, finite numbers, the
run it names, a round within the run's planned rounds, printable strings of bounded length.

`problem(event, run_id, rounds)` returns what is wrong with a parsed line, in words, or None.
`parse_line` parses a line's bytes strictly: no NaN or Infinity, no RecursionError.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_LINE = 16 << 20  # bytes of one line: a round of 100k picks and every layer's |gamma| fits
SHORT = 256  # characters of a timestamp, job id, node, level, layer
MESSAGE = 8192  # characters of a log line
ERROR = 65536  # characters of an end line's error (a traceback)
MAX_INT = 2**53  # integers a float holds exactly (SQLite and JSON readers agree on them)
MAX_ITEMS = 1_000_000  # rows of one round (picks, channels, gammas)
LEVELS = ("info", "warning", "error")
END_STATUSES = ("done", "failed")  # what a job writes (runner.execute_to_events)
STOP_REASONS = ("time limit", "signal")
# control characters (terminal escapes among them) and the bidirectional overrides that reorder text
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class Bad(ValueError):
    """A line that is JSON but not an event: what is wrong, in words."""


def _reject_constant(name: str) -> None:
    raise Bad(f"{name} is no number JSON allows; allowed: finite numbers")


def parse_line(line: bytes) -> Any:
    """A line's JSON value; ValueError when it is not JSON (torn, or not JSON at all). NaN and
    Infinity are refused (Python's json takes them); JSON nested too deep for the parser is Bad."""
    try:
        return json.loads(line, parse_constant=_reject_constant)
    except RecursionError:
        raise Bad("JSON nested too deep") from None


# ---- field checks ---------------------------------------------------------------------------------


def _text(value: Any, key: str, limit: int = SHORT, lines: bool = False) -> str:
    """A printable string of at most `limit` characters; `lines` allows newlines and tabs."""
    if not isinstance(value, str):
        raise Bad(f"{key} must be a string, not {_kind(value)}")
    if len(value) > limit:
        raise Bad(f"{key} is {len(value)} characters long; allowed: at most {limit}")
    if (_UNPRINTABLE if lines else _UNPRINTABLE_LINE).search(value):
        raise Bad(f"{key} holds control characters (terminal escapes?); allowed: printable text")
    return value


def _int(value: Any, key: str, low: int = 0, high: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Bad(f"{key} must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise Bad(f"{key} is {value}; allowed: {low} to {high}")
    return value


def _number(value: Any, key: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bad(f"{key} must be a number, not {_kind(value)}")
    if isinstance(value, int) and abs(value) > MAX_INT:  # SQLite holds no larger integer
        raise Bad(f"{key} is {str(value)[:40]}; allowed: a finite number from {low} to {high}")
    if not math.isfinite(value) or not low <= value <= high:
        raise Bad(f"{key} is {value!r}; allowed: a finite number from {low} to {high}")
    return float(value)


def _optional(check: Any, value: Any, key: str, *args: Any) -> Any:
    return None if value is None else check(value, key, *args)


def _object(value: Any, key: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Bad(f"{key} must be an object, not {_kind(value)}")
    missing = [k for k in required if k not in value]
    if missing:
        raise Bad(f"{key} lacks {', '.join(missing)}")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise Bad(f"{key} has unknown fields {', '.join(map(str, unknown))[:100]}")
    return value


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise Bad(f"{key} must be a list, not {_kind(value)}")
    if len(value) > MAX_ITEMS:
        raise Bad(f"{key} holds {len(value)} items; allowed: at most {MAX_ITEMS}")
    return value


def _json_numbers(value: Any, key: str, integers: bool = False, nulls: bool = False) -> str:
    """JSON text of a list of numbers (a column that holds it as text)."""
    _text(value, key, MAX_LINE)
    try:
        items = json.loads(value, parse_constant=_reject_constant)
    except Bad:
        raise
    except (ValueError, RecursionError):
        raise Bad(f"{key} must be JSON text of a list of numbers") from None
    for i, item in enumerate(_list(items, key)):
        if not (nulls and item is None):
            (_int if integers else _number)(item, f"{key}[{i}]")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


# ---- the line kinds -------------------------------------------------------------------------------

COMMON = ("type", "at", "job")
ROUND_ROW = ("round", "n_labeled", "accuracy", "test_loss", "weight_decay", "lr", "effective_channels",
             "total_channels", "conv_l2", "train_seconds", "acquire_seconds", "pick_mean_score",
             "pick_class_counts", "gamma_bins", "gamma_counts")
ROUND_OPTIONAL = ("test_images", "test_correct")
EPOCH_ROW = ("round", "epoch", "train_loss", "train_accuracy", "lr", "images_per_second")
EPOCH_OPTIONAL = ("train_ce", "train_kd")  # the mean CE and alpha * T^2 * KL terms (NULL without a teacher)
TEACHER = ("temperature", "teacher_test_accuracy", "teacher_prev_accuracy", "teacher_labeled_accuracy",
           "teacher_picks_accuracy", "teacher_picks_confidence", "student_prev_fit", "student_picks_fit")
PROVENANCE = ("torch_version", "cuda_version", "device_name", "threads", "deterministic", "compiled",
              "altui_version")


def _round_index(value: Any, key: str, rounds: int | None) -> int:
    """A round of the run: 0 to its planned rounds less one (any when they are not known)."""
    return _int(value, key, 0, MAX_INT if rounds is None else max(rounds - 1, 0))


def _check_round(e: dict[str, Any], rounds: int | None) -> None:
    row = _object(e["row"], "row", ROUND_ROW, ROUND_OPTIONAL)
    _round_index(row["round"], "row.round", rounds)
    _int(row["n_labeled"], "row.n_labeled")
    _number(row["accuracy"], "row.accuracy", 0.0, 1.0)
    for key in ("test_loss", "weight_decay", "lr", "conv_l2", "train_seconds", "acquire_seconds"):
        _number(row[key], f"row.{key}", 0.0)
    total = _int(row["total_channels"], "row.total_channels")
    _int(row["effective_channels"], "row.effective_channels", 0, total)
    _optional(_number, row["pick_mean_score"], "row.pick_mean_score")
    _json_numbers(row["pick_class_counts"], "row.pick_class_counts", integers=True)
    _json_numbers(row["gamma_bins"], "row.gamma_bins")
    _json_numbers(row["gamma_counts"], "row.gamma_counts", integers=True)
    images = _optional(_int, row.get("test_images"), "row.test_images")
    correct = _optional(_text, row.get("test_correct"), "row.test_correct", MAX_LINE)
    if (images is None) != (correct is None):
        raise Bad("row.test_images and row.test_correct go together")
    if correct is not None and (len(correct) != 4 * (((images + 7) // 8 + 2) // 3)
                                or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", correct)):
        raise Bad(f"row.test_correct is not the base64 bitset of {images} images")
    for i, c in enumerate(_list(e["channels"], "channels")):
        c = _object(c, f"channels[{i}]", ("layer", "channels", "effective"))
        _text(c["layer"], f"channels[{i}].layer")
        _int(c["effective"], f"channels[{i}].effective", 0, _int(c["channels"], f"channels[{i}].channels"))
    for i, p in enumerate(_list(e["picks"], "picks")):
        p = _object(p, f"picks[{i}]", ("pool_index", "score"))
        _int(p["pool_index"], f"picks[{i}].pool_index")
        _number(p["score"], f"picks[{i}].score")
    for i, g in enumerate(_list(e["gammas"], "gammas")):
        g = _object(g, f"gammas[{i}]", ("layer", "abs_gamma"))
        _text(g["layer"], f"gammas[{i}].layer")
        _json_numbers(g["abs_gamma"], f"gammas[{i}].abs_gamma", nulls=True)
    teacher = e.get("teacher")
    if teacher is not None:
        teacher = _object(teacher, "teacher", TEACHER)
        _number(teacher["temperature"], "teacher.temperature", 0.0)
        for key in TEACHER[1:]:
            _number(teacher[key], f"teacher.{key}", 0.0, 1.0)


def _check_epoch(e: dict[str, Any], rounds: int | None) -> None:
    row = _object(e["row"], "row", EPOCH_ROW, EPOCH_OPTIONAL)
    _round_index(row["round"], "row.round", rounds)
    _int(row["epoch"], "row.epoch", 1)
    _number(row["train_loss"], "row.train_loss", 0.0)
    _number(row["train_accuracy"], "row.train_accuracy", 0.0, 1.0)
    _number(row["lr"], "row.lr", 0.0)
    _number(row["images_per_second"], "row.images_per_second", 0.0)
    for key in EPOCH_OPTIONAL:
        _optional(_number, row.get(key), f"row.{key}", 0.0)


def _check_start(e: dict[str, Any], rounds: int | None) -> None:
    _text(e["node"], "node")
    _int(e["restarts"], "restarts", 0, 1_000_000)


def _check_log(e: dict[str, Any], rounds: int | None) -> None:
    if e["level"] not in LEVELS:
        raise Bad(f"level is {str(e['level'])[:40]!r}; allowed: {', '.join(LEVELS)}")
    _text(e["message"], "message", MESSAGE, lines=True)


def _check_end(e: dict[str, Any], rounds: int | None) -> None:
    if e["status"] not in END_STATUSES:
        raise Bad(f"status is {str(e['status'])[:40]!r}; allowed: {', '.join(END_STATUSES)}")
    if e["error"] is not None:
        _text(e["error"], "error", ERROR, lines=True)


def _check_stopped(e: dict[str, Any], rounds: int | None) -> None:
    if e["reason"] not in STOP_REASONS:
        raise Bad(f"reason is {str(e['reason'])[:40]!r}; allowed: {', '.join(STOP_REASONS)}")
    _optional(_text, e.get("signal"), "signal")


def _check_provenance(e: dict[str, Any], rounds: int | None) -> None:
    values = _object(e["values"], "values", PROVENANCE)
    for key in ("torch_version", "device_name", "deterministic", "altui_version"):
        _text(values[key], f"values.{key}")
    _optional(_text, values["cuda_version"], "values.cuda_version")
    _int(values["threads"], "values.threads", 0, 1_000_000)
    _int(values["compiled"], "values.compiled", 0, 1)


def _check_saved(e: dict[str, Any], rounds: int | None) -> None:
    _round_index(e["round"], "round", rounds)
    _int(e["epoch"], "epoch", 1)


KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Any]] = {  # kind: required, optional, check
    "start": (("node", "restarts"), (), _check_start),
    "log": (("level", "message"), (), _check_log),
    "epoch": (("row",), (), _check_epoch),
    "round": (("row", "channels", "picks", "gammas"), ("teacher",), _check_round),
    "provenance": (("values",), (), _check_provenance),
    "saved": (("round", "epoch"), (), _check_saved),
    "end": (("status", "error"), (), _check_end),
    "stopped": (("reason",), ("signal",), _check_stopped),
}


def problem(event: Any, run_id: int | None, rounds: int | None) -> str | None:
    """What makes a parsed line no event of run `run_id` (planned `rounds`); None when it is one.
    (None for either: not checked, as on the node, which reads its own file.)"""
    try:
        check(event, run_id, rounds)
    except Bad as e:
        return str(e)
    return None


def check(event: Any, run_id: int | None, rounds: int | None) -> None:
    if not isinstance(event, dict):
        raise Bad(f"a line must be a JSON object, not {_kind(event)}")
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in KINDS:
        raise Bad(f"type is {str(kind)[:40]!r}; allowed: {', '.join(KINDS)}")
    required, optional, check_kind = KINDS[kind]
    _object(event, f"a {kind} line", (*COMMON, *required), ("run", *optional))
    _text(event["at"], "at")
    _optional(_text, event["job"], "job")
    if "run" in event and run_id is not None and _int(event["run"], "run") != run_id:
        raise Bad(f"the line names run {event['run']}, and this is the events file of run {run_id}")
    check_kind(event, rounds)
