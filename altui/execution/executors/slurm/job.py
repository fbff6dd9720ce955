"""What a Slurm job runs on its compute node: `SlurmRun`, which submitit pickles (by reference to this
module) into `<run folder>/slurm/` and calls on the node. The run goes through
`runner.execute_to_events`, which appends to the run's events file and never opens the store;
`exit_now` ends the job's process as soon as its end is durable, non-zero for a failed run.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import traceback
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from altui.execution.events import EventSink


class SlurmRun:
    """What a job runs on its compute node (submitit pickles it by reference to this module)."""

    def __init__(self, run_id: int, run_dir: str, config: dict[str, Any], device: str, recorded: int):
        self.run_id, self.run_dir, self.config = run_id, run_dir, config
        self.device, self.recorded = device, recorded

    def __call__(self) -> str:
        from altui.execution.events import EventSink

        sink = EventSink(self.run_dir, os.environ.get("SLURM_JOB_ID"))
        try:  # the start first: the head sees the job run while Python imports torch
            sink.start(os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                       int(os.environ.get("SLURM_RESTART_COUNT") or 0))
            try:
                from altui.execution import runner
            except Exception as e:  # torch or a dependency missing on this node: it would recur
                sink.log(f"failed: the node's Python cannot import altui's runner: {e}", "error")
                sink.end("failed", traceback.format_exc()[-4000:])
                status = "failed"
            else:
                status = self.run(sink, runner)
        finally:
            sink.close()
        # The run's end is durable; submitit writes its result before atexit. A failed run's job
        # exits non-zero, so that Slurm records it FAILED (and --mail-type=FAIL mails).
        atexit.register(exit_now, 0 if status == "done" else 1)
        return status

    def run(self, sink: EventSink, runner: ModuleType) -> str:
        def stop(signum: int, frame: object) -> None:
            # Slurm cancels, requeues or preempts (SIGTERM), or the time limit nears (submitit's
            # SIGUSR2): end now; the head resubmits, or Slurm restarts this job, from the checkpoint.
            why = "the job's time limit is near" if signum == signal.SIGUSR2 else "Slurm ends the job"
            raise runner.Stopped(f"{why}: {signal.Signals(signum).name}")

        signal.signal(signal.SIGTERM, stop)  # replaces submitit's handlers: no end is written
        signal.signal(signal.SIGUSR2, stop)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(int(cpus))
        return runner.execute_to_events(sink, self.run_id, self.config, self.device, self.recorded)


def exit_now(code: int = 0) -> None:
    """End the job's process without Python's teardown, which takes seconds with torch loaded
    (2.5 s on an idle CPU, about 10 s on a busy one) while the job keeps its allocation and its place
    among --max-jobs. Runs first among atexit's handlers, after submitit has written its result."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
