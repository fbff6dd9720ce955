"""Bench, measurement, run ETAs and plans: imports altui.al, altui.store, altui.execution; never results/tui/cli."""
