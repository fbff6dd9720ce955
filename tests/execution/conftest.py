"""Fixtures of the worker's tests: the environment of their `altui` commands and a store whose worker
and runners are stopped afterwards. Tests marked `slurm` get a real single-node Slurm cluster
(slurm_cluster.py, started once per session): their environment finds it, and their store's jobs
are cancelled afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import LocalSlurm
from worker_helpers import kill9, new_store, runner_pids, stop_store_worker


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalSlurm]:
    c = LocalSlurm(cpus=4).start()
    try:
        yield c
    finally:
        c.stop()


def slurm_cluster(request: pytest.FixtureRequest) -> LocalSlurm | None:
    return request.getfixturevalue("cluster") if request.node.get_closest_marker("slurm") else None


@pytest.fixture
def env(request: pytest.FixtureRequest) -> dict[str, str]:
    # One thread per run: fair on 2 cores, and the same arithmetic in every run (equal picks).
    # No GPU for `--gpus auto`, even on a GPU machine: these tests are about the CPU slots.
    # A Slurm head's environment is its jobs' (sbatch exports it).
    c = slurm_cluster(request)
    return dict(c.env if c else os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")


@pytest.fixture
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A store in tmp_path; afterwards its worker is stopped, stray runners are killed and (Slurm)
    every job is cancelled."""
    c = slurm_cluster(request)
    path = new_store(tmp_path)
    yield path
    stop_store_worker(path)
    for pid in runner_pids(path):
        kill9(pid)
    if c:
        c.cancel_all()
