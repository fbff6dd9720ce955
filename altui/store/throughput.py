"""The estimate cache: throughput measured by `altui estimate`, and that of the epochs recorded."""

from __future__ import annotations

from typing import Any

import altui.store.connection as connection  # connection.now: the one clock, patched by tests
from altui.store.connection import StoreBase


class ThroughputMixin(StoreBase):
    """Store methods of the throughput cache."""

    def measured_throughput(self) -> dict[tuple[str, int], float]:
        """Training images per second per (model, batch size), over every epoch recorded here: total
        images over total seconds, so that long epochs weigh as much as they took."""
        rows = self._rows("""
            SELECT model, batch, SUM(n * k) AS images, SUM(n * inverse) AS seconds FROM (
                SELECT json_extract(r.spec_json, '$.model') AS model,
                    json_extract(r.spec_json, '$.batch_size') AS batch,
                    json_extract(r.spec_json, '$.initial') + e.round * json_extract(r.spec_json, '$.budget') AS n,
                    e.k, e.inverse
                FROM (SELECT run_id, round, COUNT(*) AS k, SUM(1.0 / images_per_second) AS inverse FROM epochs
                      WHERE images_per_second > 0 GROUP BY run_id, round) e  -- each run's settings read once a round
                JOIN runs r ON r.id = e.run_id)
            GROUP BY model, batch""")
        return {(r["model"], r["batch"]): r["images"] / r["seconds"] for r in rows if r["seconds"]}

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
