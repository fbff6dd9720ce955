"""What a run records, whichever way it reports (runner.py writes the store, events.py a Slurm job's
events file): a round's rows as the store keeps them (round_row, channel_rows, gamma_rows, pick_rows),
and the checkpoint that resumes a run after a round (save_checkpoint, load_checkpoint).
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from altui.al.sink import EpochState, ResumeState, RoundResult
from altui.files import make_dir, write_atomic
from altui.store import to_json


class RunError(Exception):
    """A failure the user can act on (a damaged checkpoint, a diverged training): its message is
    all of runs.error, no traceback."""


def round_row(r: RoundResult) -> dict[str, Any]:
    return {
        "round": r.round, "n_labeled": r.n_labeled, "accuracy": r.accuracy, "test_loss": r.test_loss,
        "weight_decay": r.weight_decay, "lr": r.lr, "effective_channels": r.probes.effective_channels,
        "total_channels": r.probes.total_channels, "conv_l2": r.probes.conv_l2,
        "train_seconds": r.train_seconds, "acquire_seconds": r.acquire_seconds,
        "pick_mean_score": r.pick_mean_score, "pick_class_counts": to_json(r.pick_class_counts, "pick_class_counts"),
        "gamma_bins": to_json(r.probes.gamma_bins, f"round {r.round}: its |gamma| histogram (training diverged?)"),
        "gamma_counts": to_json(r.probes.gamma_counts, "gamma_counts"),
        "test_images": r.test_correct.images if r.test_correct else None,
        "test_correct": r.test_correct.text() if r.test_correct else None,
    }


def teacher_row(r: RoundResult) -> dict[str, Any] | None:
    """The round's teacher diagnostics (rounds >= 1), as the `teacher` table keeps them."""
    return dataclasses.asdict(r.teacher) if r.teacher is not None else None


def channel_rows(r: RoundResult) -> list[dict[str, Any]]:
    return [{"layer": c.layer, "channels": c.channels, "effective": c.effective} for c in r.probes.channels]


def gamma_rows(r: RoundResult) -> list[dict[str, Any]]:
    return [{"layer": c.layer, "abs_gamma": float32_json(c.abs_gamma)} for c in r.probes.channels]


def float32_json(values: tuple[float, ...]) -> str:
    """A JSON array of float32 values in their shortest exact form (a float32 read back is the same
    float32); a non-finite value (a diverged layer) is null, which JSON allows and NaN is not."""
    return "[" + ",".join(str(np.float32(v)) if math.isfinite(v) else "null" for v in values) + "]"


def pick_rows(r: RoundResult) -> list[dict[str, Any]]:
    return [{"pool_index": i, "score": s} for i, s in zip(r.picks, r.pick_scores, strict=True)]


def save_checkpoint(state: ResumeState, path: Path) -> None:
    """Serialised in memory first, so that a full disk surfaces as an OSError (ENOSPC) from the
    write, whose partial temporary file is removed."""
    make_dir(path.parent)
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    write_atomic(path, buffer.getbuffer())


def load_checkpoint(run_id: int, round_: int, path: Path) -> ResumeState:
    """The checkpoint that resumes a run after `round_`; RunError says what to do when it is missing
    or damaged."""
    again = f"`altui retry --from-scratch {run_id}` restarts the run at round 0"
    if not path.is_file():
        raise RunError(f"run {run_id} recorded round {round_} but its checkpoint {path} is missing; {again}")
    try:
        return ResumeState.from_dict(torch.load(path, weights_only=True))
    except Exception as e:  # truncated, overwritten, or not a checkpoint at all: torch raises many kinds
        cause = " ".join(str(e).split()).split(". ")[0][:120]  # torch's messages run long
        raise RunError(f"the checkpoint {path} of run {run_id} (round {round_}) is damaged and cannot be read "
                       f"({type(e).__name__}: {cause}); {again}") from e


def save_partial(state: EpochState, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    write_atomic(path, buffer.getbuffer())


def load_partial(path: Path, round_: int) -> EpochState | None:
    """The saved part of round `round_`, or None: no file, another round's, or one that cannot be read
    (the round then starts from its first epoch, as without it: the same results, later)."""
    try:
        state = EpochState.from_dict(torch.load(path, weights_only=True))
    except Exception:  # missing, truncated, not ours: torch raises many kinds
        return None
    return state if state.round == round_ else None
