"""The paper's methods by name and its training recipes per data set and model (sections 4.2-4.4)."""

from __future__ import annotations

from typing import Any

from altui.al.config import ConfigError, RunConfig

MNIST_LIKE = ("mnist", "fashion-mnist", "kmnist", "digits")

# Paper sections 4.2-4.4. `weight_decay` is lambda_0 of the WS methods.
RECIPES: dict[str, dict[str, Any]] = {
    "cnn5": dict(epochs=100, lr=0.01, milestones=(50,), batch_size=32, weight_decay=0.02),
    "resnet18": dict(epochs=350, lr=0.1, milestones=(150, 250), batch_size=128, weight_decay=0.008),
    "densenet100": dict(epochs=300, lr=0.1, milestones=(150, 225), batch_size=64, weight_decay=0.003),
}
# The offline demo set is small: fewer epochs keep a whole run within minutes on a CPU.
DIGITS_RECIPE = dict(epochs=30, lr=0.01, milestones=(20,), batch_size=32, weight_decay=0.02)

# Yoo & Kweon (2019) train Learning Loss with their own schedule: 200 epochs, lr x0.1 at 160, the loss
# module's gradient cut from the backbone after epoch 120.
LL_RECIPE = dict(epochs=200, milestones=(160,), ll_stop_epoch=120)
# A preset's own training schedule, used instead of the model's when the experiment sets no
# SCHEDULE_KEYS: `epochs` and `milestones` make one schedule and come from one place (see `resolve`).
PRESET_RECIPES: dict[str, dict[str, Any]] = {"LL": LL_RECIPE}
SCHEDULE_KEYS = ("epochs", "milestones")

PRESETS: dict[str, dict[str, Any]] = {
    "Random": dict(acquisition="random", wd_schedule="fixed", init="warm", distill="none"),
    # The paper does not say whether Random re-initialises each round: both are offered.
    "Random+init": dict(acquisition="random", wd_schedule="fixed", init="fresh", distill="none"),
    "Entropy": dict(acquisition="entropy", wd_schedule="fixed", init="warm", distill="none"),
    "Entropy+init": dict(acquisition="entropy", wd_schedule="fixed", init="fresh", distill="none"),
    "WS": dict(acquisition="entropy", wd_schedule="inverse", init="warm", distill="none"),
    "WS+init": dict(acquisition="entropy", wd_schedule="inverse", init="fresh", distill="none"),
    "WS+init+KD1": dict(acquisition="entropy", wd_schedule="inverse", init="fresh", distill="kd1"),
    "WS+init+KD2": dict(acquisition="entropy", wd_schedule="inverse", init="fresh", distill="kd2"),
    # Yoo & Kweon keep training one model across cycles with their own decay, 5e-4.
    "LL": dict(acquisition="ll", wd_schedule="fixed", init="warm", distill="none", weight_decay=5e-4),
}
# Beyond the paper: its method composed with other acquisitions (docs/method.md). "X" is Entropy with X's
# acquisition (fixed decay, warm), "X+WS+init+KD1" the paper's method with it.
BEYOND = {"BALD": "bald", "CoreSet": "coreset", "BADGE": "badge"}
for _name, _acquisition in BEYOND.items():
    PRESETS[_name] = {**PRESETS["Entropy"], "acquisition": _acquisition}
    PRESETS[f"{_name}+WS+init+KD1"] = {**PRESETS["WS+init+KD1"], "acquisition": _acquisition}


def recipe(dataset: str, model: str) -> dict[str, Any]:
    """Training defaults for a model on a data set."""
    if model not in RECIPES:
        raise ConfigError(f"model {model!r} is unknown; allowed: {', '.join(RECIPES)}")
    return dict(DIGITS_RECIPE if dataset == "digits" and model == "cnn5" else RECIPES[model])


def resolve(preset: str | None, fields: dict[str, Any], method: dict[str, Any] | None = None) -> RunConfig:
    """Build a run's settings: recipe < preset < `fields` (the experiment's) < `method` (explicit).

    `fields["weight_decay"]` is lambda_0 of the WS methods. Fixed-decay presets (Random, Random+init,
    Entropy, Entropy+init) then get the WS methods' last-round decay, lambda_0 * N_0 / N_{R-1}: the
    paper compares methods that end with the same decay (section 4.3); with one round that is lambda_0
    itself (Table 1). A `weight_decay` in `method` is taken as it is.

    The LL preset trains with LL_RECIPE (200 epochs, [160], detach after 120) unless `fields` sets
    `epochs` or `milestones`: then it trains like the other methods, on the experiment's schedule with
    the model's recipe filling in the other key, and detaches after 0.6 * epochs unless `ll_stop_epoch`
    is set. So LL's 200 epochs never meet milestones written for another length, nor its milestone
    160 another number of epochs. An `ll_stop_epoch` of the experiment or the method always wins.
    """
    base = RunConfig()
    dataset = fields.get("dataset", base.dataset)
    model = fields.get("model", base.model)
    merged: dict[str, Any] = recipe(dataset, model)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset {preset!r} is unknown; allowed: {', '.join(PRESETS)}")
        p = PRESETS[preset]
        merged.update(p)
        if preset in PRESET_RECIPES and not any(k in fields for k in SCHEDULE_KEYS):
            merged.update(PRESET_RECIPES[preset])
        merged.update(fields)
        if "weight_decay" in p:
            merged["weight_decay"] = p["weight_decay"]
        elif merged["wd_schedule"] == "fixed":
            rounds = merged.get("rounds", base.rounds)
            initial = merged.get("initial", base.initial)
            budget = merged.get("budget", base.budget)
            merged["weight_decay"] = merged["weight_decay"] * initial / (initial + (rounds - 1) * budget)
    else:
        merged.update(fields)
    merged.update(method or {})
    return RunConfig.from_dict(merged).validate()
