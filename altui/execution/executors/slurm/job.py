"""What a Slurm job runs on its compute node: `SlurmRun`, which submitit pickles (by reference to this
module) into `<run folder>/slurm/` and calls on the node. The run goes through
`runner.execute_to_events`, which appends to the run's events file and never opens the store;
`exit_now` ends the job's process as soon as its end is durable, non-zero for a failed run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from altui.execution.events import EventSink


class JobStopped(BaseException):
    """Slurm stops the job: its time limit nears (SIGUSR2, `signal_delay_s` before it) or it ends the job
    (SIGTERM: a cancel, requeue or preemption). A BaseException, so that no `except Exception` of the
    run takes it for the run's own failure."""

    def __init__(self, signum: int):
        self.signum = signum
        why = "the job's time limit is near" if signum == signal.SIGUSR2 else "Slurm ends the job"
        super().__init__(f"{why}: {signal.Signals(signum).name}")


def stop(signum: int, frame: object) -> None:
    raise JobStopped(signum)


class SlurmRun:
    """What a job runs on its compute node (submitit pickles it by reference to this module)."""

    def __init__(self, run_id: int, run_dir: str, config: dict[str, Any], device: str, recorded: int,
                 save_every: float | None = None):
        self.run_id, self.run_dir, self.config = run_id, run_dir, config
        self.device, self.recorded = device, recorded
        self.save_every = save_every  # seconds between saves of a round in progress (EventSink)

    def __call__(self) -> str:
        # First of all, before torch is imported (seconds, on a busy node): a signal that comes
        # during the import stops the job as cleanly as one during a round. These replace submitit's
        # handlers, which would requeue or end the job without telling the head.
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGUSR2, stop)
        from altui.execution.events import EventSink

        sink = EventSink(self.run_dir, os.environ.get("SLURM_JOB_ID"), getattr(self, "save_every", None),
                         self.run_id)
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
        except JobStopped as e:
            # the completed rounds are kept (each one's checkpoint and line are durable); the head
            # resubmits, or Slurm restarts the job, from the last of them
            sink.log(f"stopped ({e}); completed rounds are kept", "warning")
            sink.write("stopped", sync=True, reason="time limit" if e.signum == signal.SIGUSR2 else "signal",
                       signal=signal.Signals(e.signum).name)
            if e.signum == signal.SIGUSR2:
                sink.close()
                wait_for_the_limit()
            raise
        finally:
            with contextlib.suppress(OSError):
                sink.close()
        # The run's end is durable; submitit writes its result before atexit. A failed run's job
        # exits non-zero, so that Slurm records it FAILED (and --mail-type=FAIL mails).
        atexit.register(exit_now, 0 if status == "done" else 1)
        return status

    def run(self, sink: EventSink, runner: ModuleType) -> str:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(int(cpus))
        return runner.execute_to_events(sink, self.run_id, self.config, self.device, self.recorded)


def wait_for_the_limit() -> None:
    """Idle until Slurm ends the job at its time limit (SIGTERM, then SIGKILL): Slurm then records
    TIMEOUT, as for any job stopped by its limit, and the head knows the job has ended. The wait is
    at most the signal's delay, which altui sizes to the limit (options.signal_delay)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        time.sleep(60)


def exit_now(code: int = 0) -> None:
    """End the job's process without Python's teardown, which takes seconds with torch loaded
    (2.5 s on an idle CPU, about 10 s on a busy one) while the job keeps its allocation and its place
    among --max-jobs. Runs first among atexit's handlers, after submitit has written its result."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
