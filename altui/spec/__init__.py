"""experiments.toml → runs: parser (validation, expansion into runs), keys (the schema of keys and their
value checks), positions (where keys are written), issues (problems, where they are, reading the TOML),
limits (size and nesting, checked before parsing), slurm ([experiment.slurm] and Slurm option checks
shared with the Slurm executor). Imports only altui.al (the run settings and their checks)."""

from altui.spec.parser import MAX_RUNS, Experiment, RunSpec, SpecError, SpecFile, SpecIssue, load_spec, parse_spec

__all__ = ["MAX_RUNS", "Experiment", "RunSpec", "SpecError", "SpecFile", "SpecIssue", "load_spec", "parse_spec"]
