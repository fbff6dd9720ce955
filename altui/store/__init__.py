"""The SQLite store, the only SQL (docs/schema.md): imports only altui.files, the standard library and sqlite-utils."""

from __future__ import annotations

from altui.store.connection import (
    BUSY_TIMEOUT_MS,
    EVENTS_FILE,
    READ_BUSY_MS,
    StoreError,
    checkpoint_file,
    make_run_folder,
    now,
    parse_time,
    partial_file,
    run_folder,
    runs_folder,
    store_error,
    to_json,
)
from altui.store.results import ResultsMixin
from altui.store.runs import RunsMixin
from altui.store.schema import STATUSES, migrations
from altui.store.throughput import ThroughputMixin

__all__ = ["BUSY_TIMEOUT_MS", "EVENTS_FILE", "READ_BUSY_MS", "STATUSES", "Store", "StoreError", "checkpoint_file",
           "make_run_folder", "migrations", "now", "parse_time", "partial_file", "run_folder", "runs_folder",
           "store_error", "to_json"]


class Store(RunsMixin, ResultsMixin, ThroughputMixin):
    """A connection to one altui database (StoreBase: how it opens) with every query: runs, results, throughput."""
