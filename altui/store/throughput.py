"""The estimate cache: throughput measured by `altui estimate`, and the speeds runs achieved here."""

from __future__ import annotations

from typing import Any

import altui.store.connection as connection  # connection.now: the one clock, patched by tests
from altui.store.connection import StoreBase


class ThroughputMixin(StoreBase):
    """Store methods of the throughput cache."""

    def run_speeds(self) -> list[dict[str, Any]]:
        """Per run that recorded rounds: its device name and compiled flag (provenance), status,
        attempt, start and end, the workload's settings (model, dataset, batch, compile, distill), and over its
        recorded rounds the training images, their seconds (training, evaluation, acquisition) and
        count, beside the rounds planned (altui.speed.speeds turns them into speeds)."""
        return self._rows("""
            SELECT r.device_name AS device, r.compiled, r.status, r.attempt, r.started_at, r.finished_at,
                json_extract(r.spec_json, '$.model') AS model, json_extract(r.spec_json, '$.dataset') AS dataset,
                json_extract(r.spec_json, '$.batch_size') AS batch, json_extract(r.spec_json, '$.compile') AS compile,
                json_extract(r.spec_json, '$.distill') AS distill,
                json_extract(r.spec_json, '$.epochs') * x.n AS images, x.seconds, x.rounds,
                json_extract(r.spec_json, '$.rounds') AS planned
            FROM runs r JOIN (SELECT run_id, SUM(n_labeled) AS n, SUM(train_seconds + acquire_seconds) AS seconds,
                                     COUNT(*) AS rounds FROM rounds GROUP BY run_id) x ON x.run_id = r.id
            WHERE json_valid(r.spec_json)
            ORDER BY r.started_at, r.id""")

    THROUGHPUT_KEY = ("device", "model", "input", "batch", "compile", "augment", "slots", "kind")

    def throughput(self, device: str | None = None, torch_version: str | None = None) -> list[dict[str, Any]]:
        """Cached measurements (`altui estimate`), of one device and torch version when given."""
        where, params = [], []
        for column, value in (("device", device), ("torch_version", torch_version)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return self._rows(f"SELECT * FROM throughput {'WHERE ' + ' AND '.join(where) if where else ''} "
                          "ORDER BY measured_at", params)

    def save_throughput(self, rows: list[dict[str, Any]]) -> None:
        """Store measurements; one of the same key replaces the earlier one."""
        with self._write() as db:
            db["throughput"].upsert_all(
                [{**r, "measured_at": r.get("measured_at") or connection.now()} for r in rows], pk=self.THROUGHPUT_KEY)
