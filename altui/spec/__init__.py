"""experiments.toml → runs: the parser, the schema of keys and their checks, the expansion into runs.
Imports only altui.al (the run settings and their checks)."""

from altui.spec.parser import MAX_RUNS, Experiment, RunSpec, SpecError, SpecFile, SpecIssue, load_spec, parse_spec

__all__ = ["MAX_RUNS", "Experiment", "RunSpec", "SpecError", "SpecFile", "SpecIssue", "load_spec", "parse_spec"]
