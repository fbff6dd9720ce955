"""Read queries of recorded results (what the report, claims and ETAs use) and the raw-table export."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from altui.store.connection import StoreBase, StoreError


class ResultsMixin(StoreBase):
    """Store methods that read results."""

    def rounds(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM rounds WHERE run_id = ? ORDER BY round", (run_id,))

    def last_round(self, run_id: int) -> int:
        """The last recorded round of a run, -1 when none is."""
        row = self.db.conn.execute("SELECT MAX(round) FROM rounds WHERE run_id = ?", (run_id,)).fetchone()
        return -1 if row[0] is None else row[0]

    def teacher(self, run_id: int) -> list[dict[str, Any]]:
        """A run's teacher diagnostics (rounds >= 1), by round."""
        return self._rows("SELECT * FROM teacher WHERE run_id = ? ORDER BY round", (run_id,))

    def teacher_rows(self, experiment: str) -> list[dict[str, Any]]:
        """An experiment's teacher diagnostics per run and round, with the run's method, sweep point
        and seed, the round's N_t and test accuracy, and the last epoch's mean CE and alpha * T^2 * KL term."""
        return self._rows("""
            SELECT r.id AS run_id, r.method, r.sweep_json, r.seed, t.*, x.n_labeled, x.accuracy,
                p.train_ce, p.train_kd
            FROM teacher t JOIN runs r ON r.id = t.run_id JOIN experiments e ON e.id = r.experiment_id
            JOIN rounds x ON x.run_id = t.run_id AND x.round = t.round
            LEFT JOIN epochs p ON p.run_id = t.run_id AND p.round = t.round
                AND p.epoch = (SELECT MAX(epoch) FROM epochs q WHERE q.run_id = t.run_id AND q.round = t.round)
            WHERE e.name = ?
            ORDER BY r.id, t.round""", (experiment,))

    def epochs(self, run_id: int, round_: int | None = None) -> list[dict[str, Any]]:
        """A run's epoch rows (training loss, accuracy, lr, throughput), of one round when `round_` is given."""
        if round_ is not None:
            return self._rows("SELECT * FROM epochs WHERE run_id = ? AND round = ? ORDER BY epoch", (run_id, round_))
        return self._rows("SELECT * FROM epochs WHERE run_id = ? ORDER BY round, epoch", (run_id,))

    def channels(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM channels WHERE run_id = ? ORDER BY round, rowid", (run_id,))

    def picks(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM picks WHERE run_id = ? ORDER BY round, rowid", (run_id,))

    def gammas(self, run_id: int, layer: str | None = None) -> list[dict[str, Any]]:
        """|gamma| rows of a run (`abs_gamma` as JSON text), by round in network order; `layer`
        keeps one layer's."""
        if layer is None:
            return self._rows("SELECT * FROM gammas WHERE run_id = ? ORDER BY round, rowid", (run_id,))
        return self._rows("SELECT * FROM gammas WHERE run_id = ? AND layer = ? ORDER BY round",
                          (run_id, layer))

    def events(self, run_id: int | None = None, after: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Log lines after event id `after` (oldest first), of one run or of all."""
        if run_id is None:
            sql, params = "SELECT * FROM events WHERE id > ? ORDER BY id DESC LIMIT ?", (after, limit)
        else:
            sql = "SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id DESC LIMIT ?"
            params = (run_id, after, limit)
        return list(reversed(self._rows(sql, params)))

    # ---- report reads ------------------------------------------------------------------------

    EXPORT_TABLES = ("runs", "rounds", "epochs", "channels", "picks", "gammas", "teacher")

    def export_columns(self, table: str) -> list[str]:
        """The columns of a raw table that `export_rows` yields, in schema order."""
        self._check_export_table(table)
        return [c.name for c in self.db[table].columns]

    def export_rows(self, table: str, experiment: str | None = None) -> Iterator[dict[str, Any]]:
        """A raw table's rows, one at a time from the SQLite cursor (never the whole table in memory),
        in primary-key order; `experiment` keeps the rows of that experiment's runs."""
        self._check_export_table(table)
        order = {"runs": "t.id", "rounds": "t.run_id, t.round", "epochs": "t.run_id, t.round, t.epoch",
                 "channels": "t.run_id, t.round, t.rowid", "picks": "t.run_id, t.round, t.rowid",
                 "gammas": "t.run_id, t.round, t.rowid", "teacher": "t.run_id, t.round"}[table]
        run = "t" if table == "runs" else "r"
        join = "" if table == "runs" else "JOIN runs r ON r.id = t.run_id"
        where, params = ("WHERE e.name = ?", [experiment]) if experiment else ("", [])
        sql = (f"SELECT t.* FROM {table} t {join} JOIN experiments e ON e.id = {run}.experiment_id "
               f"{where} ORDER BY {order}")
        return self.db.query(sql, params)

    def _check_export_table(self, table: str) -> None:
        if table not in self.EXPORT_TABLES:  # the name goes into SQL text: only known tables
            raise StoreError(f"cannot export table {table!r}; allowed: {', '.join(self.EXPORT_TABLES)}")

    def result_rows(
        self, experiment: str | None = None, run_id: int | None = None, test_correct: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Per-round numbers with their run's experiment, method, sweep point and seed, ordered by
        experiment, run and round: what the summary, plots and report aggregate. `test_correct` adds
        the per-image bitsets (`test_images`, `test_correct`) that the claims read."""
        where, params = [], []
        if experiment is not None:
            where.append("e.name = ?")
            params.append(experiment)
        if run_id is not None:
            where.append("r.id = ?")
            params.append(run_id)
        sql = f"""
            SELECT e.name AS experiment, r.id AS run_id, r.name AS run, r.method, r.sweep_json, r.seed,
                x.round, x.n_labeled, x.accuracy, x.weight_decay, x.effective_channels, x.total_channels
                {", x.test_images, x.test_correct" if test_correct else ""}
            FROM rounds x JOIN runs r ON r.id = x.run_id JOIN experiments e ON e.id = r.experiment_id
            {"WHERE " + " AND ".join(where) if where else ""}
            ORDER BY e.id, r.id, x.round"""
        return self.db.query(sql, params)

    def layer_rows(self, experiment: str, layer_by_model: dict[str, str]) -> list[dict[str, Any]]:
        """Per-round effective channels of one batch-norm layer per run: the layer that
        `layer_by_model` names for the run's model (runs of other models have none). Columns as
        `result_rows`' where they share a name, plus layer, channels, effective and model."""
        if not layer_by_model:
            return []
        model = "json_extract(r.spec_json, '$.model')"
        match = " OR ".join(f"({model} = ? AND c.layer = ?)" for _ in layer_by_model)
        params = [experiment, *(v for pair in layer_by_model.items() for v in pair)]
        return self._rows(f"""
            SELECT e.name AS experiment, r.id AS run_id, r.method, r.sweep_json, r.seed, x.round,
                x.n_labeled, c.layer, c.channels, c.effective, {model} AS model
            FROM channels c JOIN rounds x ON x.run_id = c.run_id AND x.round = c.round
            JOIN runs r ON r.id = c.run_id JOIN experiments e ON e.id = r.experiment_id
            WHERE e.name = ? AND ({match})
            ORDER BY r.id, x.round""", params)

    def method_settings(self, experiment: str, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Per method of an experiment, the run settings `keys` of its first run (in run order)."""
        columns = ", ".join(f"json_extract(r.spec_json, '$.{k}') AS \"{k}\"" for k in keys)
        rows = self._rows(f"""
            SELECT r.method, {columns} FROM runs r JOIN experiments e ON e.id = r.experiment_id
            WHERE e.name = ? ORDER BY r.id""", (experiment,))
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            out.setdefault(row["method"], {k: row[k] for k in keys})
        return out

    def experiment(self, name: str) -> dict[str, Any] | None:
        """The latest `experiments` row of that name (queueing an edited experiment adds a row)."""
        rows = self._rows("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1", (name,))
        return rows[0] if rows else None
