"""Speed: `altui bench` and `altui estimate` (docs/benchmarks.md)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from altui.cli.app import app, db_path, err, fail, open_store, read_spec, tell, wide
from altui.cli.completion import complete_experiment
from altui.spec import SpecError
from altui.store import Store
from altui.tui.format import duration


def _progress(message: str) -> None:
    err.print(f"  {message}", style="dim", highlight=False, markup=False)


@app.command()
def bench(
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seconds: Annotated[float, typer.Option(min=0.01, help="Seconds of the slowest loop's timed block.")] = 2.0,
    repeats: Annotated[int, typer.Option(min=1, help="Timed blocks of each loop; the median counts.")] = 3,
    images: Annotated[int | None, typer.Option(min=1, help="Images per block, instead of --seconds.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="The reference DataLoader's num_workers.")] = 0,
    compiled: Annotated[bool, typer.Option(help="Also time altui's compiled training loop.")] = True,
    slots: Annotated[int, typer.Option(min=1, help="Also train in N processes at once on the device.")] = 1,
    peak_tflops: Annotated[float | None, typer.Option(
        min=0.001, help="The GPU's bf16 peak for MFU (default: known from its name).")] = None,
    acquisitions: Annotated[bool, typer.Option(
        help="Also time each acquisition (entropy, bald, coreset, badge) picking --budget of --pool.")] = False,
    pool: Annotated[int, typer.Option(min=2, help="Pool images of the acquisition rows.")] = 10_000,
    budget: Annotated[int, typer.Option(min=1, help="Picks of the acquisition rows.")] = 1_000,
) -> None:
    """Images/s of altui's training (eager and compiled) and pool scoring against a per-sample
    DataLoader loop; with --slots N, N processes training at once and their sum; with --acquisitions,
    each acquisition's seconds to pick --budget of --pool and its ratio to entropy's.

    See docs/benchmarks.md."""
    import torch

    from altui.al.config import ConfigError
    from altui.al.loop import resolve_device
    from altui.speed import bench as b
    from altui.speed.acquire_bench import acquisition_table, run_acquisition_bench
    from altui.speed.measure import device_name

    if acquisitions and budget > pool:
        fail(f"--budget {budget} is more than --pool {pool}: an acquisition picks at most the pool")
    try:
        dev = resolve_device(device)
        where, on_gpu = device_name(dev), dev.type == "cuda"
        results = b.run_bench(device, seconds, repeats, images, workers, log=_progress, compiled=compiled)
        together = b.run_slots(results, device, slots, max(3.0, 2 * seconds), log=_progress) if slots > 1 else []
        picked = run_acquisition_bench(device, pool, budget, repeats, log=_progress) if acquisitions else []
    except ConfigError as e:
        fail(str(e))
    peak = (peak_tflops or b.peak_tflops(where)) if on_gpu else None
    wide.print(f"altui bench: {where}, torch {torch.__version__}, reference DataLoader num_workers={workers}, "
              f"median of {repeats} blocks", highlight=False)
    flops = ", ".join(f"{r.case} {r.flops / 1e6:,.1f} MFLOP" for r in results if r.metric == "score")
    wide.print(f"forward FLOPs per image (training counts 3x): {flops}"
              + (f"; MFU against a bf16 peak of {peak:g} TFLOP/s" if peak else ""), highlight=False)
    if on_gpu and not peak:
        wide.print("MFU: unknown peak for this GPU; give --peak-tflops", highlight=False)
    wide.print(b.results_table(results, peak))
    if together:
        mode = "compiled" if on_gpu else "eager"
        wide.print(f"{slots} processes training at once on {where} ({mode}, as runs there train):",
                  highlight=False)
        wide.print(b.slots_table(together, peak))
    if picked:
        wide.print(f"acquisition: seconds to pick {budget:,} of a pool of {pool:,} (median of {repeats}), "
                   "as the round loop does, against entropy on the same model:", highlight=False)
        wide.print(acquisition_table(picked))


@contextmanager
def _scratch_store() -> Iterator[Store]:
    """A store in a temporary folder, for measurements that have no store to be cached in."""
    with tempfile.TemporaryDirectory(prefix="altui-estimate-") as tmp, Store(Path(tmp) / "scratch.db") as store:
        yield store


@app.command()
def estimate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An experiments.toml file.")],
    experiment: Annotated[str, typer.Argument(help="The experiment to estimate.", autocompletion=complete_experiment)],
    gpus: Annotated[int, typer.Option(min=1, help="Devices that run the experiment's runs.")] = 1,
    slots: Annotated[int, typer.Option(min=1, help="Runs at once per device (the worker's --slots-per-gpu).")] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where to measure.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    remeasure: Annotated[bool, typer.Option(help="Measure again instead of using the store's cache.")] = False,
    seconds: Annotated[float, typer.Option(min=0.05, help="Seconds of each timed measurement.")] = 1.0,
) -> None:
    """Training images, device-hours and wall time of an experiment on this machine's device, from a
    short measurement, cached in the store when there is one (docs/benchmarks.md)."""
    import torch

    from altui.al.config import ConfigError
    from altui.speed.estimate import estimate_runs

    spec = read_spec(file)
    try:
        configs = [r.config for r in spec.get(experiment).runs]
    except SpecError as e:  # an unknown experiment
        fail(str(e))
    cached = db_path(ctx).exists()  # a read-only command: the measurement is cached in a store that exists
    try:
        with open_store(ctx) if cached else _scratch_store() as store:
            result = estimate_runs(store, configs, device, gpus, slots, seconds=seconds, remeasure=remeasure,
                                   log=_progress)
    except ConfigError as e:
        fail(str(e))
    if as_json:
        print(json.dumps({"experiment": experiment, **result.to_json(), "torch_version": torch.__version__}))
        return
    unit = "GPU-hours" if not (result.device or "").startswith("cpu") else "device-hours"
    tell(f"{experiment}: {result.runs} runs, {result.train_images:,} training images")
    tell(f"on {result.device} (torch {torch.__version__}), {gpus} device(s) x {slots} slot(s):")
    tell(f"  wall time {duration(result.wall_seconds) or 'unknown'}, {result.gpu_hours:.3g} {unit}")
    if not cached:
        tell(f"(measured now and not kept: there is no store at {db_path(ctx)}; `altui queue` creates one)")
