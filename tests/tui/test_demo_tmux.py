"""`altui demo` for real, in an 80x24 tmux terminal: it queues the digits demo, starts a worker and opens
the dashboard; the dashboard shows a finished run's experiment, accuracy and λ_t without a key pressed;
`q` quits it and leaves the worker and its runs going."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from altui.execution.daemon import stop_worker, worker_status
from altui.store import Store

REPO = Path(__file__).resolve().parents[2]
ALTUI = Path(sys.executable).parent / "altui"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


def tiny_demo(text: str) -> str:
    """The shipped experiments.toml with digits-demo cut down to seconds of training."""
    start = text.index('name = "digits-demo"')
    end = text.index("[[experiment]]", start)
    block = text[start:end]
    tiny = {"rounds": "2", "initial": "20", "budget": "20", "epochs": "2", "milestones": "[1]"}
    for key, value in tiny.items():
        block = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", block)
    return text[:start] + block + text[end:]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, screen: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; the terminal shows:\n{screen()}")
        time.sleep(1.0)


def test_demo_runs_on_after_the_dashboard_quits(tmp_path: Path) -> None:
    (tmp_path / "experiments.toml").write_text(tiny_demo((REPO / "experiments.toml").read_text()))
    db = tmp_path / "runs" / "altui.db"
    tmux = ["tmux", "-L", f"altui-test-{tmp_path.name}"]  # a server of our own, killed at the end

    def screen() -> str:
        shown = subprocess.run([*tmux, "capture-pane", "-p", "-t", "demo"], capture_output=True, text=True)
        return shown.stdout

    try:
        command = f"{ALTUI} demo; echo altui exited $?; sleep 600"  # the pane stays to be read
        session = ["-s", "demo", "-x", "80", "-y", "24", "-c", str(tmp_path)]  # the smallest supported terminal
        subprocess.run([*tmux, "new-session", "-d", *session, command], check=True)
        # A finished run's row, with no key pressed: ✓, its experiment, its accuracy, λ_t and channels.
        finished_row = re.compile(r"✓.*\bdigits-demo\b.*\s[01]\.\d{4}\s+(0\.\d+|\d(\.\d+)?e-\d+)\s+\d+/\d+")
        wait_until(lambda: bool(finished_row.search(screen())), 300, "a finished run's results", screen)

        subprocess.run([*tmux, "send-keys", "-t", "demo", "q"], check=True)
        wait_until(lambda: "altui exited 0" in screen(), 30, "the dashboard to quit", screen)
        text = screen()
        assert "digits-demo: queued 4 new run(s)" in text and "started a worker" in text
        assert "the dashboard closed; the worker (pid" in text and "goes on" in text  # said on the way out

        assert worker_status(db) is not None, "quitting the dashboard stopped the worker"

        def all_done() -> bool:
            with Store(db) as store:
                return {r["status"] for r in store.runs()} == {"done"}

        worker_log = tmp_path / "runs" / "worker.log"
        wait_until(all_done, 600, "every demo run to finish", worker_log.read_text)  # minutes on a loaded box
        with Store(db) as store:
            runs = store.runs(experiment="digits-demo")
        assert len(runs) == 4 and all(r["rounds_done"] == 2 for r in runs)
    finally:
        if worker_status(db) is not None:
            stop_worker(db)
        subprocess.run([*tmux, "kill-server"], capture_output=True)
