"""Fixtures of the worker's tests: the environment of their `altui` commands and a store whose worker
and runners are stopped afterwards. (test_slurm.py has its own, with a Slurm cluster.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_helpers import kill9, new_store, runner_pids, stop_store_worker


@pytest.fixture
def env() -> dict[str, str]:
    # One thread per run: fair on 2 cores, and the same arithmetic in every run (equal picks).
    # No GPU for `--gpus auto`, even on a GPU machine: these tests are about the CPU slots.
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """A store in tmp_path; afterwards its worker is stopped and stray runners are killed."""
    path = new_store(tmp_path)
    yield path
    stop_store_worker(path)
    for pid in runner_pids(path):
        kill9(pid)
