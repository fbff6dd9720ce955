"""The Slurm head reads an events file that another machine writes and anyone with write access to the
run folder can edit: fed 12,000 lines of random bytes, random JSON, valid lines with one field made
hostile, and cut lines (a fixed seed), the real head ingests it without a traceback and without
hanging, and the store holds only the valid rounds, in order, with finite numbers and printable text."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from altui.execution.events import EventsReader, events_path
from altui.execution.executors.slurm.head import SlurmWorker
from altui.store import Store

ROUNDS = 3
JOB = "7"


def valid_round(r: int) -> dict[str, Any]:
    row = {"round": r, "n_labeled": 10 * (r + 1), "accuracy": 0.5 + r / 10, "test_loss": 1.0, "weight_decay": 0.01,
           "lr": 0.01, "effective_channels": 200, "total_channels": 224, "conv_l2": 3.0, "train_seconds": 1.0,
           "acquire_seconds": 0.1, "pick_mean_score": 0.3, "pick_class_counts": "[5, 5]",
           "gamma_bins": "[0.0, 1.0]", "gamma_counts": "[224]", "test_images": 10, "test_correct": "/wA="}
    return {"type": "round", "at": f"2026-01-01T00:00:0{r}", "job": JOB, "run": 1, "row": row,
            "channels": [{"layer": "bn1", "channels": 224, "effective": 200}],
            "picks": [{"pool_index": 3 * r + i, "score": 0.1 * i} for i in range(3)],
            "gammas": [{"layer": "bn1", "abs_gamma": "[0.5, null]"}]}


def valid_lines(rng: random.Random) -> list[dict[str, Any]]:
    """What a job writes: a start, logs, epochs and saves, a round now and then."""
    lines: list[dict[str, Any]] = [{"type": "start", "at": "2026-01-01T00:00:00", "job": JOB, "run": 1, "node": "n1",
                                    "restarts": 0}]
    for i in range(60):
        lines.append({"type": "log", "at": f"2026-01-01T00:01:{i:02d}", "job": JOB, "level": "info",
                      "message": f"log line {i}"})
        lines.append({"type": "epoch", "at": "2026-01-01T00:02:00", "job": JOB,
                      "row": {"round": rng.randrange(ROUNDS), "epoch": rng.randrange(1, 4), "train_loss": 0.5,
                              "train_accuracy": 0.8, "lr": 0.01, "images_per_second": 100.0}})
        lines.append({"type": "saved", "at": "2026-01-01T00:03:00", "job": JOB, "round": 0, "epoch": 1})
    return lines


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    return [lambda: None, lambda: rng.random() < 0.5, lambda: rng.randrange(-10**40, 10**40),
            lambda: rng.choice([1e31, -0.0, 1e-320, 2**53 + 1, 3.5]),
            lambda: "".join(chr(rng.randrange(0, 0x3000)) for _ in range(rng.randrange(12))),
            lambda: rng.choice(["round", "log", "end", "start", "epoch", "saved", "stopped"]),
            lambda: [random_json(rng, depth + 1) for _ in range(rng.randrange(4))],
            lambda: {rng.choice(["type", "row", "round", "at", "job", "x"]): random_json(rng, depth + 1)
                     for _ in range(rng.randrange(4))},
            lambda: {"type": rng.choice(["round", "log", "end"]), "row": random_json(rng, depth + 1)}][kind]()


HOSTILE_TEXT = ['NaN', 'Infinity', '-Infinity', '1e31', '1e999', '"1"', '[]', '{}', 'null', 'true', '-1',
                '"\\u001b[31mred"', '"' + "x" * 10_000 + '"', '[' * 50 + ']' * 50, '99999999999999999999999']


def mutated(rng: random.Random, event: dict[str, Any]) -> bytes:
    """A valid line with one field (or one field of its row) replaced by something hostile."""
    event = json.loads(json.dumps(event))
    target = event["row"] if "row" in event and rng.random() < 0.7 else event
    key = rng.choice(sorted(target))
    marker = "\0MARK\0"
    target[key] = marker
    text = json.dumps(event).replace(json.dumps(marker), rng.choice(HOSTILE_TEXT))
    return text.encode() + b"\n"


def fuzz_lines(seed: int, count: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The file's lines (bytes) and the valid rounds among them."""
    rng = random.Random(seed)
    good = valid_lines(rng)
    out: list[bytes] = []
    rounds = [valid_round(r) for r in range(ROUNDS)] + [valid_round(ROUNDS)]  # the last: beyond the plan
    next_round = 0
    while len(out) < count:
        pick = rng.random()
        if pick < 0.25:
            out.append((json.dumps(rng.choice(good)) + "\n").encode())
        elif pick < 0.40:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).replace(b"\n", b"") + b"\n")
        elif pick < 0.55:
            out.append(json.dumps(random_json(rng), default=str).encode(errors="replace") + b"\n")
        elif pick < 0.80:
            out.append(mutated(rng, rng.choice(good + rounds)))
        elif pick < 0.95:
            line = json.dumps(rng.choice(good + rounds)).encode()
            out.append(line[: rng.randrange(1, len(line))] + b"\n")  # cut, as a killed writer leaves it
        elif next_round <= ROUNDS or rng.random() < 0.2:
            out.append((json.dumps(rounds[min(next_round, ROUNDS)]) + "\n").encode())
            next_round += 1
    return out, rounds[:ROUNDS]


def printable(text: str) -> bool:
    return not any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F for c in text)


def test_the_head_ingests_twelve_thousand_hostile_lines_and_keeps_only_valid_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "altui.db"
    with Store(db) as store:
        [run_id] = store.enqueue("e", "e.toml", {}, [{"name": "r", "method": "Random", "seed": 0,
                                                       "config": {"rounds": ROUNDS}}])
        store.claim("slurm")
        store.slurm_submitted(run_id, JOB)
        head = SlurmWorker(store, SimpleNamespace(options=SimpleNamespace(max_jobs=1)))  # type: ignore[arg-type]
        monkeypatch.setattr("altui.execution.worker.say", lambda message: None)
        job = head.watch(run_id, JOB)
        lines, rounds = fuzz_lines(seed=23, count=12_000)
        path = events_path(store.run_dir(run_id))
        store.make_run_dir(run_id)
        started = time.monotonic()
        with open(path, "ab") as f:
            for i in range(0, len(lines), 1000):  # the job appends while the head polls
                f.write(b"".join(lines[i:i + 1000]))
                f.flush()
                head.ingest(job)  # stops before a torn-looking line: read again later
        for _ in range(len(lines)):  # the job has ended: every line is read, the bad ones skipped
            head.ingest(job, final=True)
            if job.reader.offset == path.stat().st_size:
                break
        assert job.reader.offset == path.stat().st_size
        assert time.monotonic() - started < 60, "the ingest must not crawl"

        recorded = list(store.export_rows("rounds"))
        assert [r["round"] for r in recorded] == list(range(ROUNDS)), "every valid round, in order, none beyond"
        for row, want in zip(recorded, rounds, strict=True):
            assert {k: row[k] for k in want["row"]} == want["row"]
        assert [p["pool_index"] for p in store.export_rows("picks")] == list(range(3 * ROUNDS))
        for table in ("epochs", "channels", "picks", "gammas"):
            for row in store.export_rows(table):
                assert all(math.isfinite(v) for v in row.values() if isinstance(v, float)), (table, row)
        events = store.events(run_id, limit=100_000)
        assert all(printable(e["message"]) and "Traceback" not in e["message"] for e in events)
        skipped = [e for e in events if e["message"].startswith("skipped a line")]
        assert skipped and all(f"{path}:" in e["message"] for e in skipped), "each skip says file:line"
        assert len({e["message"] for e in skipped}) == len(skipped), "each bad line is said once"
        assert store.run(run_id)["node"] in (None, "n1")


def test_a_line_over_16_mib_is_skipped_whole_once_it_ends_and_the_next_line_is_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = b'{"type":"log","at":"2026-01-01T00:00:00","job":"7","level":"info","message":"after"}\n'
    path.write_bytes(b'{"type":"log","message":"' + b"x" * (40 << 20))  # 40 MiB, its newline not yet written
    reader = EventsReader(path, 1, 3)
    assert reader.read() == [] and reader.read_to == 0, "an unended line: waited for"
    with open(path, "ab") as f:
        f.write(b'"}\n' + log)
    events = reader.read()
    assert [e["type"] for e in events] == ["bad"] and events[0]["why"] == "the line is longer than 16 MiB"
    assert events[0]["where"] == f"{path}:1"
    reader.commit()
    assert [e.get("message") for e in reader.read()] == ["after"], "the line after it is read"
    assert reader.read_to == path.stat().st_size
