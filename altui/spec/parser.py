"""experiments.toml -> validated experiments, each expanded into runs.

A file holds one `[defaults]` table and `[[experiment]]` tables. An experiment expands into one run per
seed x sweep point x method. Validation collects every problem at once, each with file:line:column,
the key path and what is allowed, so that a researcher fixes a file in one pass. Numbers must be
finite and within each setting's range, names and strings printable and bounded, and a file expands
to at most MAX_RUNS runs (counted before anything is expanded); its size and nesting are checked before
it is parsed (altui.spec.limits). The format is documented in docs/configuration.md; its keys and the
check of each value are in altui.spec.keys, the scanner of key positions in altui.spec.positions, the
issues and the reading of the TOML in altui.spec.issues.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from altui.al.catalog import DATASET_INFO, MODEL_MIN_SIZE
from altui.al.config import ConfigError, RunConfig
from altui.al.presets import PRESETS, resolve
from altui.spec.issues import Issues, SpecError, SpecIssue, parse_toml
from altui.spec.keys import (
    DEFAULTS_KEYS,
    EXPERIMENT_KEYS,
    EXPERIMENT_NAME,
    FIELD_KINDS,
    KINDS,
    MAX_SEED,
    METHOD_FIELDS,
    METHOD_KEYS,
    METHOD_NAME,
    PATH_DATASETS,
    TOP_KEYS,
    count_of,
    format_value,
    has_kind,
    is_sweep,
    normalized,
    show,
    unknown_choice,
    value_error,
)
from altui.spec.limits import MAX_NAME, MAX_NESTING, LimitError, deepest, issue_path, read_bounded
from altui.spec.positions import scan_positions
from altui.spec.slurm import table_issues

# ----------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class RunSpec:
    name: str  # "<experiment>/<method>[/<k>=<v>,...]/s<seed>"
    experiment: str
    method: str
    seed: int
    sweep: dict[str, Any]  # this run's sweep point, {} without sweeps
    config: RunConfig


@dataclass(frozen=True)
class Experiment:
    name: str
    file: str
    line: int  # of its [[experiment]] header
    table: dict[str, Any]  # as written, merged over [defaults]; JSON-able
    runs: tuple[RunSpec, ...]

    def run_rows(self) -> list[dict[str, Any]]:
        """The runs as Store.enqueue takes them."""
        return [
            {"name": r.name, "method": r.method, "seed": r.seed, "sweep": r.sweep, "config": r.config.to_dict()}
            for r in self.runs
        ]


@dataclass(frozen=True)
class SpecFile:
    path: str
    experiments: tuple[Experiment, ...]

    def get(self, name: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        names = [e.name for e in self.experiments]
        raise SpecError([SpecIssue(self.path, None, None, "experiment", unknown_choice("experiment", name, names))])


MAX_RUNS = 10_000  # runs one file may expand to, unless the caller allows more (--max-runs)


def load_spec(path: str | Path, max_runs: int = MAX_RUNS) -> SpecFile:
    """Read and validate a file; SpecError lists every issue found."""
    try:
        text = read_bounded(Path(path))
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([SpecIssue(str(path), None, None, "", f"cannot read the file: {e}")]) from None
    except LimitError as e:
        raise SpecError([SpecIssue(str(path), None, None, "", str(e))]) from None
    return parse_spec(text, str(path), max_runs)


def parse_spec(text: str, file: str = "<string>", max_runs: int = MAX_RUNS) -> SpecFile:
    text = text.removeprefix("\ufeff")
    doc = parse_toml(text, file)
    issues = Issues(file, scan_positions(text))
    depth, parts = deepest(doc)
    if depth > MAX_NESTING:  # dotted keys nest without brackets: a.b.c... = 1
        issues.add(issue_path(parts), f"keys nested deeper than {MAX_NESTING} levels; allowed: the tables of "
                                      "docs/configuration.md")
        raise SpecError(issues.sorted())
    for key in doc:
        if key not in TOP_KEYS:
            issues.add(key, unknown_choice("top-level key", key, TOP_KEYS))

    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        issues.add("defaults", "expected a table: [defaults]")
        defaults = {}
    _check_table(defaults, "defaults", DEFAULTS_KEYS, issues)
    defaults_ok = not issues.items

    tables = doc.get("experiment", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        issues.add("experiment", "expected tables: [[experiment]]")
        tables = []
    if not tables:
        issues.add("experiment", "the file defines no experiment; add an [[experiment]] table")
    experiments, total = [], 0
    for i, table in enumerate(tables):
        parser = _ExperimentParser(i, table, defaults, issues, total, max_runs)
        experiments.append(parser.parse(defaults_ok))
        total += parser.count
    _check_unique_names(tables, issues)
    if issues.items:
        raise SpecError(issues.sorted())
    return SpecFile(file, tuple(e for e in experiments if e is not None))


# ----------------------------------------------------------------------------------------------
# Tables: their keys and values (altui.spec.keys)


def _check_table(table: dict[str, Any], prefix: str, allowed: tuple[str, ...], issues: Issues) -> None:
    """Known keys and valid values (each element of a sweep); names, methods, seeds are checked apart."""
    for key, value in table.items():
        path = f"{prefix}.{key}"
        if key not in allowed:
            issues.add(path, unknown_choice("key", key, allowed))
        elif key in ("name", "methods", "seeds"):
            continue
        elif key == "slurm":  # the experiment's own Slurm settings: a table of its own
            for sub, message in table_issues(value):
                issues.add(f"{path}.{sub}" if sub else path, message)
        elif is_sweep(key, value):
            if not value:
                issues.add(path, "an empty list sweeps nothing; give one value or a list of values")
            first: dict[str, int] = {}  # each value's first index (a dict: 100k values in one pass)
            for n, v in enumerate(value):
                error = value_error(key, v)
                if error:
                    issues.add(f"{path}[{n}]", error)
                elif first.setdefault(format_value(normalized(key, v)), n) != n:
                    issues.add(f"{path}[{n}]", f"{show(v)} is swept twice; allowed: each value once")
        else:
            error = value_error(key, value)
            if error:
                issues.add(path, error)


def _check_unique_names(tables: list[dict[str, Any]], issues: Issues) -> None:
    first: dict[str, int] = {}
    for i, table in enumerate(tables):
        name = table.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            line, _ = issues.locate(f"experiment[{first[name]}].name")
            issues.add(f"experiment[{i}].name",
                       f"duplicate experiment name {name!r}, first used at line {line}; names must be unique")
        else:
            first[name] = i


# ----------------------------------------------------------------------------------------------
# Experiments

DECAY_KEYS = ("weight_decay", "lambda_n")


@dataclass(frozen=True)
class _Method:
    name: str
    preset: str | None
    fields: dict[str, Any]  # explicit settings, applied last
    index: int  # in `methods`


class _ExperimentParser:
    """Checks one [[experiment]] table (merged over [defaults]) and expands it into runs."""

    def __init__(self, index: int, table: dict[str, Any], defaults: dict[str, Any], issues: Issues,
                 runs_before: int = 0, max_runs: int = MAX_RUNS):
        self.prefix = f"experiment[{index}]"
        self.table = table
        self.defaults = defaults
        self.merged = {**defaults, **table}
        if isinstance(defaults.get("slurm"), dict) and isinstance(table.get("slurm"), dict):
            self.merged["slurm"] = {**defaults["slurm"], **table["slurm"]}  # key by key, as the worker's
        # weight_decay (λ_0) and lambda_n (λ_0·N_0) say one thing: the experiment's own replaces [defaults]'
        for mine, other in DECAY_KEYS, DECAY_KEYS[::-1]:
            if mine in table and other not in table:
                self.merged.pop(other, None)
        self.issues = issues
        self.runs_before, self.max_runs = runs_before, max_runs
        self.count = 0  # the runs this experiment expands to, once parsed

    def origin(self, key: str) -> str:
        """The path of the value of `key` this experiment uses: its own, else [defaults]'."""
        if key in self.defaults and key not in self.table:
            return f"defaults.{key}"
        return f"{self.prefix}.{key}"

    def where(self, key: str, point: dict[str, tuple[int, Any]]) -> str:
        """Like origin(), with the index of the swept value: "experiment[3].initial[2]"."""
        return f"{self.origin(key)}[{point[key][0]}]" if key in point else self.origin(key)

    def parse(self, defaults_ok: bool) -> Experiment | None:
        before = len(self.issues.items)
        _check_table(self.table, self.prefix, EXPERIMENT_KEYS, self.issues)
        self.check_decay_keys()
        # dataset and model may come from [defaults], name and methods may not
        required = {"name": self.table, "dataset": self.merged, "model": self.merged, "methods": self.table}
        for key, table in required.items():
            if key not in table:
                self.issues.add(f"{self.prefix}.{key}", f"missing required key {key!r}")
        name = self.table.get("name")
        if "name" in self.table and not (isinstance(name, str) and EXPERIMENT_NAME.fullmatch(name)
                                         and len(name) <= MAX_NAME):
            self.issues.add(f"{self.prefix}.name", f"expected a name of letters, digits and . _ + - (at "
                                                   f"most {MAX_NAME}), got {show(name)}")
        methods = self.methods(self.table["methods"]) if "methods" in self.table else []
        seeds = self.seeds(self.merged.get("seeds", [0]))
        sweeps = [(k, [normalized(k, v) for v in vs]) for k, vs in self.merged.items() if is_sweep(k, vs)]
        if not self.within_cap(len(seeds), math.prod(len(vs) for _, vs in sweeps), len(methods)):
            return None  # counted, never expanded: seeds = 100000000 costs nothing
        points = [dict(p) for p in itertools.product(*[[(k, (n, v)) for n, v in enumerate(vs)]
                                                       for k, vs in sweeps])]
        for point in points:
            self.check_point(point)
        if not defaults_ok or len(self.issues.items) > before:
            return None
        runs = self.expand(name, methods, seeds, points)
        line, _ = self.issues.locate(self.prefix)
        return Experiment(name, self.issues.file, line or 0, self.merged, tuple(runs))

    def check_decay_keys(self) -> None:
        """weight_decay and lambda_n are two ways to give λ_0: one table may hold one of them."""
        for table, prefix in ((self.defaults, "defaults"), (self.table, self.prefix)):
            if all(k in table for k in DECAY_KEYS):
                line, _ = self.issues.locate(f"{prefix}.weight_decay")
                self.issues.add(f"{prefix}.lambda_n",
                                f"lambda_n (λ_0·N_0) and weight_decay (λ_0, line {line}) both give λ_0; "
                                "allowed: one of them (λ_0 = lambda_n / initial)")

    def within_cap(self, seeds: int, points: int, methods: int) -> bool:
        """Count the runs (seeds x sweep points x methods) and check the file's cap."""
        self.count = seeds * points * methods
        total = self.runs_before + self.count
        if total <= self.max_runs:
            return True
        above = f", {total:,} with the experiments above it" if self.runs_before else ""
        factors = " x ".join(count_of(n, what) for n, what in ((seeds, "seed"), (points, "sweep point"),
                                                              (methods, "method")))
        self.issues.add(self.prefix, f"expands to {self.count:,} runs ({factors}){above}; allowed: at most "
                                     f"{self.max_runs:,} runs per file (fewer seeds, sweep values or methods, "
                                     "or --max-runs N)")
        return False

    def methods(self, value: Any) -> list[_Method]:
        path = f"{self.prefix}.methods"
        if not isinstance(value, list):
            self.issues.add(path, f"expected a list of preset names or method tables, got {show(value)}")
            return []
        if not value:
            self.issues.add(path, f"methods is empty; give at least one of {', '.join(PRESETS)} "
                                  "or a method table")
        methods: list[_Method] = []
        for j, entry in enumerate(value):
            method = self.method(f"{path}[{j}]", j, entry)
            if method is None:
                continue
            if any(m.name == method.name for m in methods):
                self.issues.add(f"{path}[{j}]", f"duplicate method name {method.name!r} in this experiment; "
                                                "give one of them a `name`")
            methods.append(method)
        return methods

    def method(self, path: str, index: int, entry: Any) -> _Method | None:
        """A preset name, or a table: `name`, optional `preset`, and method settings."""
        if isinstance(entry, str):
            if entry not in PRESETS:
                self.issues.add(path, unknown_choice("preset", entry, list(PRESETS)))
                return None
            return _Method(entry, entry, {}, index)
        if not isinstance(entry, dict):
            self.issues.add(path, f"expected a preset name or a method table, got {show(entry)}")
            return None
        ok = True
        for key, value in entry.items():
            error = None if key in METHOD_KEYS else unknown_choice("method key", key, METHOD_KEYS)
            if key in METHOD_FIELDS:
                error = value_error(key, value)
            elif key in ("name", "preset") and not isinstance(value, str):
                error = f"expected a string, got {show(value)}"
            if error:
                self.issues.add(f"{path}.{key}", error)
                ok = False
        preset = entry.get("preset")
        if isinstance(preset, str) and preset not in PRESETS:
            self.issues.add(f"{path}.preset", unknown_choice("preset", preset, list(PRESETS)))
            ok = False
        name = entry.get("name", preset)
        if name is None:
            self.issues.add(f"{path}.name", "missing `name`: a method table needs a `name` "
                                            "(or a `preset`, whose name it then takes)")
            return None
        if isinstance(name, str) and not (METHOD_NAME.fullmatch(name) and name.isprintable()
                                          and len(name) <= MAX_NAME):
            short = name if len(name) <= 40 else name[:37] + "..."
            self.issues.add(f"{path}.name", f"{short!r} is not allowed; allowed: printable characters "
                                            f"without spaces or '/', at most {MAX_NAME}")
            ok = False
        fields = {k: normalized(k, v) for k, v in entry.items() if k in METHOD_FIELDS}
        return _Method(name, preset, fields, index) if ok else None

    def seeds(self, value: Any) -> Sequence[int]:
        """A list of seeds, or n meaning 0..n-1 (a range: nothing is allocated for a huge n)."""
        path = self.origin("seeds")
        if has_kind(value, "int"):
            if not 1 <= value <= MAX_SEED + 1:
                self.issues.add(path, f"{value!r} is out of range; allowed: n >= 1 (seeds 0..n-1) or a list; seeds up "
                                      f"to {MAX_SEED:,} (what the random generators take)")
            return range(min(max(value, 0), MAX_SEED + 1))
        if not (has_kind(value, "ints") and value and all(0 <= s <= MAX_SEED for s in value)):
            self.issues.add(path, f"expected a non-empty list of integers >= 0 or a count n (seeds 0..n-1); "
                                  f"seeds up to {MAX_SEED:,} (what the random generators take), got {show(value)}")
        elif len(set(value)) != len(value):
            self.issues.add(path, f"{value} repeats a seed; allowed: each seed once")
        return value if isinstance(value, list) else []

    def values(self, point: dict[str, tuple[int, Any]]) -> dict[str, Any]:
        """The settings of one sweep point: the merged scalars with the point's values."""
        values = {k: normalized(k, v) for k, v in self.merged.items() if k in KINDS or k == "path"}
        values.update({k: v for k, (_, v) in point.items()})
        return values

    def check_point(self, point: dict[str, tuple[int, Any]]) -> None:
        """Checks across settings, for one sweep point; skipped where a value is invalid on its own."""
        values = self.values(point)

        def where(key: str) -> str:
            return self.where(key, point)

        def valid(*keys: str) -> bool:
            return all(value_error(k, values[k]) is None for k in keys if k in values)

        dataset, model = values.get("dataset"), values.get("model")
        if valid("dataset", "path"):
            if dataset in PATH_DATASETS and "path" not in values:
                self.issues.add(where("dataset"), f"dataset {dataset!r} needs `path` "
                                                  "(the .npz file, or the folder with train/ and test/)")
            if "path" in values and dataset is not None and dataset not in PATH_DATASETS:
                self.issues.add(where("path"), f"dataset {dataset!r} reads no `path`; allowed: path with "
                                               f"dataset {' or '.join(PATH_DATASETS)} (see data_root)")
        info = DATASET_INFO.get(dataset) if valid("dataset") else None
        if info is None:  # imagefolder and npz: sizes are known only once loaded
            return
        if valid("model") and model in MODEL_MIN_SIZE and MODEL_MIN_SIZE[model] > info.size:
            fit = [m for m, size in MODEL_MIN_SIZE.items() if size <= info.size]
            self.issues.add(where("model"), f"model {model!r} needs images of at least "
                                            f"{MODEL_MIN_SIZE[model]}px, {dataset} has {info.size}px; "
                                            f"allowed: {', '.join(fit)}")
        base = RunConfig()
        initial = values.get("initial", base.initial)
        rounds = values.get("rounds", base.rounds)
        budget = values.get("budget", base.budget)
        if valid("initial") and initial > info.pool:
            self.issues.add(where("initial"), f"initial = {initial} is more than the {info.pool} samples "
                                              f"of the {dataset} pool; allowed: at most {info.pool}")
        elif valid("initial", "rounds", "budget") and initial + (rounds - 1) * budget > info.pool:
            most = (info.pool - initial) // budget + 1
            self.issues.add(where("rounds"), f"{rounds} rounds need initial + (rounds - 1) * budget = "
                                             f"{initial + (rounds - 1) * budget} labels, more than the "
                                             f"{info.pool} samples of the {dataset} pool; allowed: rounds "
                                             f"<= {most} with initial = {initial}, budget = {budget}")

    def expand(self, name: str, methods: list[_Method], seeds: Sequence[int],
               points: list[dict[str, tuple[int, Any]]]) -> list[RunSpec]:
        """One run per seed x sweep point x method, seed-major: the first runs that finish already
        compare every method."""
        runs = []
        for seed, point, method in itertools.product(seeds, points, methods):
            sweep = {k: v for k, (_, v) in point.items()}
            label = ",".join(f"{k}={format_value(v)}" for k, v in sweep.items())
            fields = {k: v for k, v in self.values(point).items() if k != "path"}
            if "lambda_n" in fields:  # λ_0 = λ_0·N_0 / N_0, at this sweep point's N_0
                fields["weight_decay"] = fields.pop("lambda_n") / fields.get("initial", RunConfig().initial)
            fields["seed"] = seed
            if "path" in self.merged:
                fields["extra"] = {"path": self.merged["path"]}
            try:
                config = resolve(method.preset, fields, method.fields)
            except ConfigError as e:  # what only the whole run can tell (e.g. eq. 8's lr * decay < 1)
                key = str(e).split(" ", 1)[0]  # ConfigError messages start with the setting's name
                path = (f"{self.prefix}.methods[{method.index}].{key}" if key in method.fields
                        else self.where(key, point) if key in FIELD_KINDS else self.prefix)
                self.issues.add(path, f"method {method.name!r}: {e}")
                continue
            parts = [name, method.name, *([label] if label else []), f"s{seed}"]
            runs.append(RunSpec("/".join(parts), name, method.name, seed, sweep, config))
        return runs
