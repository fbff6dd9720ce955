"""The dashboard for real, in tmux terminals of 80x24 and 120x40, on a store with a finished
comparison and a failed run: what a person sees without a key, then with the keys of the dashboard
card (failures, compare line, keys, two runs side by side, the sort shown at once)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from altui.al.presets import resolve
from altui.store import Store

ALTUI = Path(sys.executable).parent / "altui"
FIELDS = dict(dataset="digits", model="cnn5", device="cpu", rounds=2, initial=20, budget=20, epochs=2)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def comparison_store(db: Path) -> None:
    """Experiment "pair": WS+init 2 points above Entropy+init on each of 3 seeds, 2 rounds each; a
    fourth Entropy+init run failed (out of memory)."""
    with Store(db) as store:
        specs = [{"name": f"pair/{m}/s{s}", "method": m, "seed": s,
                  "config": resolve(m, {**FIELDS, "seed": s}).to_dict()}
                 for m in ("Entropy+init", "WS+init") for s in range(3)]
        specs.append({"name": "pair/Entropy+init/s3", "method": "Entropy+init", "seed": 3,
                      "config": resolve("Entropy+init", {**FIELDS, "seed": 3}).to_dict()})
        ids = store.enqueue("pair", "experiments.toml", FIELDS, specs)
        for run_id, spec in zip(ids, specs, strict=True):
            store.claim("cpu", run_id)
            if spec["seed"] == 3:
                store.finish(run_id, "failed", "Traceback (most recent call last):\n"
                                               "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB")
                continue
            for t in range(2):
                acc = 0.5 + 0.1 * t + 0.01 * spec["seed"] + (0.02 if spec["method"] == "WS+init" else 0.0)
                store.add_round(run_id, {
                    "round": t, "n_labeled": 20 + 20 * t, "accuracy": acc, "test_loss": 1 - acc,
                    "weight_decay": 0.01, "lr": 0.01, "effective_channels": 224, "total_channels": 224,
                    "conv_l2": 1.0, "train_seconds": 1.0, "acquire_seconds": 0.1, "pick_mean_score": 0.5,
                    "pick_class_counts": "[1]", "gamma_bins": "[0, 1]", "gamma_counts": "[224]"}, [], [])
            store.finish(run_id, "done")


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_the_dashboard_card_in_a_real_terminal(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    db = tmp_path / "runs" / "altui.db"
    comparison_store(db)
    (tmp_path / "experiments.toml").write_text("")
    tmux = ["tmux", "-L", f"altui-card-{tmp_path.name}"]

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "ui"], capture_output=True, text=True).stdout

    def keys(*pressed: str) -> None:
        for key in pressed:
            subprocess.run([*tmux, "send-keys", "-t", "ui", key], check=True)
            time.sleep(0.3)

    def wait_for(what: str, shown: Callable[[str], bool], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while not shown(text := screen()):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; the terminal shows:\n{text}")
            time.sleep(0.3)
        return text

    try:
        session = ["-s", "ui", "-x", str(width), "-y", str(height), "-c", str(tmp_path)]
        subprocess.run([*tmux, "new-session", "-d", *session, f"{ALTUI}; sleep 600"], check=True)
        # 1. failures in sight: counted with the key that retries them; the reason in the table
        text = wait_for("the runs", lambda t: "pair/Entropy+init/s0" in t or "Entropy+init" in t)
        status = text.splitlines()[0]
        assert "1✗ R:retry" in status and re.search(r"\d\d:\d\d:\d\d\s*$", status), status  # the clock whole
        assert all(len(line) <= width for line in text.splitlines())
        keys("/", "failed", "Enter")  # the failed run alone: its reason on the context line
        text = wait_for("the failed run", lambda t: "failed: RuntimeError: CUDA out of memory" in t)
        keys("Escape")
        # 2. the compare line: the verdict first and whole
        keys("m")
        text = wait_for("the compare line", lambda t: "supported (p" in t)
        line = next(row for row in text.splitlines() if "supported (p" in row)
        assert line.strip().startswith("supported (p <0.001, 3 seeds) · WS+init − Entropy+init"), line
        # 5. every key, altui's first, full screen
        keys("m", "?")
        text = wait_for("the keys", lambda t: "altui keys" in t)
        assert text.index("main screen") < text.index("runs table")
        keys("Escape")
        # 6. the sort shows at once on the context line (of a done run: a failed one's reason comes first)
        keys(*["Up"] * 6, "s")
        text = wait_for("the sort note", lambda t: "sort status▲" in t.splitlines()[1])
        assert text.splitlines()[1].startswith(" #1 pair/Entropy+init/s0 · done")
        # 2. two marked runs side by side
        keys("space", "Down", "space", "d")
        text = wait_for("the diff", lambda t: "settings that differ:" in t)
        assert "A: #" in text and "B: #" in text
        assert all(len(line) <= width for line in text.splitlines())
        keys("Escape")
        wait_for("the main screen again", lambda t: "settings that differ:" not in t)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
