"""A worker's slots: the devices it runs on (the CPU, or GPUs it detects), and how many runs each takes
at once (`--slots-per-gpu auto`: from the queue's models, the GPUs' free memory and the cores).
Behaviour: docs/worker.md; the RUN_NEEDS estimates: docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass


class WorkerError(RuntimeError):
    """A worker start the user can correct (bad --gpus, --slots-per-gpu, executor options), or a
    worker that does not start or stop in time; its message says what to do."""


@dataclass(frozen=True)
class Slot:
    index: int
    gpu: str | None  # the physical GPU id (CUDA_VISIBLE_DEVICES); None: the CPU

    @property
    def label(self) -> str:
        """What runs.device records: cpu, or cuda:N with N the physical GPU."""
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"

    @property
    def device(self) -> str:
        """What the run's process uses: it sees only its slot's GPU, as cuda:0."""
        return "cpu" if self.gpu is None else "cuda"


def parse_gpus(text: str) -> list[str] | None:
    """`auto` -> None (detect), `cpu` or `none` -> [], `0,1` -> ["0", "1"]."""
    text = text.strip().lower()
    if text == "auto":
        return None
    if text in ("cpu", "none", ""):
        return []
    ids = [part.strip() for part in text.split(",")]
    # ASCII digits: str.isdigit takes '٣', which no CUDA_VISIBLE_DEVICES does
    if not all(i.isascii() and i.isdigit() and len(i) <= 4 for i in ids) or len(set(ids)) != len(ids):
        raise WorkerError(f"--gpus {text!r}: allowed: auto, cpu, or distinct GPU ids such as 0,1")
    return ids


def check_gpus(ids: list[str], visible: list[str] | None = None) -> None:
    """Refuse GPU ids this machine does not have (`visible`: detect_gpus()), before a worker starts:
    its runs would fail one after another on a device that is not there."""
    visible = detect_gpus() if visible is None else visible
    missing = [i for i in ids if i not in visible]
    if missing:
        have = f"its GPUs are {', '.join(visible)}" if visible else "it has no GPU that CUDA can use (--gpus cpu)"
        raise WorkerError(f"--gpus {','.join(ids)}: no GPU {', '.join(missing)} on this machine; {have}")


def detect_gpus() -> list[str]:
    """The GPUs this worker may use. torch is asked in a short subprocess, which keeps the daemon
    small and CUDA-free. A CUDA_VISIBLE_DEVICES set for the worker is honoured."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        count = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   timeout=120, check=True).stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError, OSError):
        count = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()][:count]
    return [str(i) for i in range(count)]


# What one run needs on a GPU, by model: GiB of memory (CUDA context, the data set as uint8, weights
# and optimizer state, bf16 activations at the recipe's batch, CUDA graph pools), and the runs at once
# beyond which the GPU is busy and more slots only slow each run down. cnn5 is bound by kernel
# launches, so many small runs fill a GPU; ResNet-18 and DenseNet-100 keep it busy with a few.
# Estimates, not measurements: `altui bench --slots N` measures them (docs/benchmarks.md).
RUN_NEEDS: dict[str, tuple[float, int]] = {"cnn5": (1.5, 16), "resnet18": (4.0, 3), "densenet100": (6.0, 2)}
MEMORY_SHARE = 0.9  # of a GPU's free memory that auto slots may plan with


MAX_SLOTS = 64  # runs at once per device: more only share it thinner (and each is a process)


def parse_slots(value: int | str) -> int | str:
    """`auto` or an integer in 1..MAX_SLOTS (text or int)."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_SLOTS:
        return int(text)
    raise WorkerError(f"--slots-per-gpu {printable_text(str(value))}: allowed: auto, or an integer >= 1 and at most "
                      f"{MAX_SLOTS}")


def printable_text(text: str) -> str:
    return repr(text if len(text) <= 20 else text[:17] + "...")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gpu_free_gib(ids: list[str]) -> dict[str, float]:
    """Free memory (GiB) of each GPU, asked of torch in a short subprocess; {} when that fails."""
    code = ("import json, torch; print(json.dumps([torch.cuda.mem_get_info(i)[0] / 2**30 "
            "for i in range(torch.cuda.device_count())]))")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(ids))
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        free = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         timeout=120, check=True, env=env).stdout)
    except (subprocess.SubprocessError, ValueError, OSError):
        return {}
    return dict(zip(ids, free, strict=False))


def auto_slots(free_gib: float | None, models: list[str], cores: int) -> tuple[int, str]:
    """Runs at once on one GPU with `free_gib` free for runs of `models` (the queue's; none: the
    heaviest model), at most `cores`; and why, in words."""
    known = [m for m in models if m in RUN_NEEDS] or [max(RUN_NEEDS, key=lambda m: RUN_NEEDS[m][0])]
    model = max(known, key=lambda m: RUN_NEEDS[m][0])
    gib, useful = RUN_NEEDS[model]
    by_memory = int(free_gib * MEMORY_SHARE // gib) if free_gib is not None else useful
    n = max(1, min(useful, by_memory, cores))
    memory = f"{free_gib:.0f} GiB free / {gib:g} GiB per run" if free_gib is not None else "free memory unknown"
    return n, f"{model}: at most {useful} useful, {memory}, {cores} core(s)"


def plan_slots(gpus: str, slots_per_gpu: int | str = "auto", models: list[str] = ()) -> tuple[list[Slot], str]:
    """The worker's slots and, for `auto`, how they were chosen. `auto` on the CPU is one slot (a
    run uses its `threads` setting's cores: 1 by default, so that runs of one seed are identical on
    any machine; docs/benchmarks.md measures two one-thread runs at once against one of two threads);
    on each GPU, see auto_slots."""
    per = parse_slots(slots_per_gpu)
    ids = parse_gpus(gpus)
    if ids is None:
        ids = detect_gpus()
    if per != "auto":
        devices: list[str | None] = list(ids) if ids else [None]
        return [Slot(i, gpu) for i, gpu in enumerate(d for d in devices for _ in range(per))], f"{per} per device"
    if not ids:
        return [Slot(0, None)], ("auto: 1 on the CPU (a run uses its `threads` setting's cores, 1 by default; "
                                 "--slots-per-gpu N runs N at once)")
    free = gpu_free_gib(ids)
    cores = max(1, available_cores() // len(ids))
    counts, notes = [], []
    for gpu in ids:
        n, why = auto_slots(free.get(gpu), models, cores)
        counts.append(n)
        notes.append(f"cuda:{gpu} {n} ({why})")
    slots = [Slot(i, gpu) for i, gpu in enumerate(g for g, n in zip(ids, counts, strict=True) for _ in range(n))]
    return slots, "auto: " + "; ".join(notes)


def make_slots(gpus: str, slots_per_gpu: int | str = "auto", models: list[str] = ()) -> list[Slot]:
    return plan_slots(gpus, slots_per_gpu, models)[0]
