"""Speed: `altui bench` (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from altui.cli.app import app, err, fail, out


@app.command()
def bench(
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    seconds: Annotated[float, typer.Option(min=0.01, help="Seconds of the slower loop's timed block.")] = 2.0,
    repeats: Annotated[int, typer.Option(min=1, help="Timed blocks of each loop; the median counts.")] = 3,
    images: Annotated[int | None, typer.Option(min=1, help="Images per block, instead of --seconds.")] = None,
    workers: Annotated[int, typer.Option(min=0, help="The reference DataLoader's num_workers.")] = 0,
) -> None:
    """Images/s of altui's training and pool scoring against a per-sample DataLoader loop.

    See docs/benchmarks.md."""
    import torch

    from altui.al.config import ConfigError
    from altui.bench import describe_device, results_table, run_bench

    try:
        where = describe_device(device)
        results = run_bench(device, seconds, repeats, images, workers,
                            log=lambda m: err.print(f"  {m}", style="dim", highlight=False))
    except ConfigError as e:
        fail(str(e))
    out.print(f"altui bench: {where}, torch {torch.__version__}, reference DataLoader num_workers={workers}, "
              f"median of {repeats} blocks", highlight=False)
    out.print(results_table(results))
