"""What can change a run's numbers besides its settings: recorded with every run (store `runs`
columns, docs/schema.md) so that a comparison can say when two runs ran differently."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import torch

from altui.al.config import RunConfig

FIELDS = ("torch_version", "cuda_version", "device_name", "threads", "deterministic", "compiled", "altui_version")


def apply_threads(cfg: RunConfig) -> None:
    """The run's intra-op threads (`threads`; 0 leaves the process's default): on the CPU, reductions
    split differently across threads, so the same seed gives the same numbers only with the same
    count (docs/method.md, "When two runs are identical")."""
    if cfg.threads and torch.get_num_threads() != cfg.threads:
        torch.set_num_threads(cfg.threads)


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC 7B13"): another CPU may round float32 sums differently."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def collect(cfg: RunConfig, device: torch.device) -> dict[str, Any]:
    """The provenance of a run starting now in this process on `device`."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu: {cpu_model()}"
    try:
        version = importlib.metadata.version("altui")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "unknown"
    return {
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "deterministic": (f"algorithms={_on(torch.are_deterministic_algorithms_enabled())} "
                          f"cudnn.benchmark={_on(torch.backends.cudnn.benchmark)} "
                          f"cudnn.deterministic={_on(torch.backends.cudnn.deterministic)}"),
        "compiled": int(cfg.compile_on(device.type)),
        "altui_version": version,
    }
