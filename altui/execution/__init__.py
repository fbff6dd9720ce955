"""Running runs: a run's process (runner), the worker's queue loop and daemon, the executors (local, Slurm).
May import altui.al, altui.store, altui.files and altui.spec; never results, speed, tui or cli."""
