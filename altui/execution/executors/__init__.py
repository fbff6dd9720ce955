"""How a worker starts runs (may import altui.execution, altui.store, altui.files): an `Executor` turns a
claimed run into a process (or a Slurm job) and reports when it ends. `local.py` starts subprocesses on
this machine; `slurm/` submits Slurm jobs through submitit and holds the Slurm head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from altui.execution.slots import Slot

UNKNOWN_EXIT = -1000  # the exit code of an adopted process, which is not our child


@dataclass
class Handle:
    """A run's process as an executor started (or adopted) it."""

    run_id: int
    slot: Slot | None  # None: adopted with no free slot of its device
    pid: int | None
    process: Any = None  # executor-specific (a Popen for LocalExecutor; None when adopted)
    term_at: float | None = None  # monotonic time of our SIGTERM
    killed: bool = False  # SIGKILL sent


class Executor(Protocol):
    def submit(self, run_id: int, slot: Slot) -> Handle: ...

    def poll(self, handle: Handle) -> int | None:
        """None while the run's process lives, else its exit code (or UNKNOWN_EXIT)."""
        ...

    def kill(self, handle: Handle, force: bool = False) -> None:
        """SIGTERM (the run requeues itself, or stays cancelled), or SIGKILL with force."""
        ...

    def adopt(self, run: dict[str, Any], slot: Slot | None) -> Handle | None:
        """A handle on a `running` run's live process that another worker started, else None."""
        ...
