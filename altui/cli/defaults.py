"""Where altui looks when it is not told: the store and the experiments file, under the working directory."""

from pathlib import Path

DEFAULT_DB = Path("runs") / "altui.db"
EXPERIMENTS_FILE = Path("experiments.toml")
