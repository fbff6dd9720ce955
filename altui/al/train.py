"""One round's training and the test evaluation: the whole loop on one screen.

Data stay on the device as uint8; each epoch is one randperm; losses and accuracies accumulate on
the device and are read once per epoch, so no step waits for the host.

Compiling (`compile`, "auto": on CUDA) runs the very function the eager path runs, `batch_loss`
(model, loss, KD teacher, LL module), through torch.compile, once per process: full batches have a
static shape (CUDA graphs on CUDA); an epoch's last partial batch, whose size changes every round,
goes through a second, dynamic-shape compilation that never recompiles (a size its graph does not
cover runs eagerly). Backward is compiled with it (AOTAutograd); SGD is fused on CUDA, foreach
elsewhere. A compilation that fails is logged once and the process trains eagerly from then on.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from altui.al.acquire import ranking_loss
from altui.al.config import RunConfig
from altui.al.distill import combined, kd_terms
from altui.al.schedule import param_groups
from altui.al.sink import EpochState, EpochStats, Sink
from altui.al.tensors import DeviceData, crop_flip


def batch_loss(
    model: nn.Module, teacher: nn.Module | None, loss_module: nn.Module | None, xb: torch.Tensor,
    yb: torch.Tensor, seen: torch.Tensor | None, seen_fraction: torch.Tensor, detach_features: bool,
    kd_alpha: float, kd_temperature: float, ll_margin: float, ll_weight: float, use_bf16: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's training loss, its number of correct predictions, its mean CE and its mean
    alpha * T^2 * KL term (zero without a teacher), all on the device.

    teacher: kd1/kd2 (`seen` marks the batch's samples of D_{t-1} for kd2, `seen_fraction` is
    |D_{t-1}| / |D_t| as a device scalar, so that a new round is no new constant to compile);
    loss_module: Learning Loss, whose features are detached from the backbone when `detach_features`.
    The float settings are constants of a run, which compiling specialises on.
    """
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=use_bf16):
        if loss_module is not None:
            logits, feats = model.forward_features(xb)
        else:
            logits = model(xb)
        per_sample = None
        if teacher is None:
            per_sample = F.cross_entropy(logits.float(), yb, reduction="none")
            loss = ce = per_sample.mean()
            kd = torch.zeros((), device=xb.device)
        else:
            with torch.no_grad():  # not inference_mode: its tensors cannot enter autograd
                t_logits = teacher(xb)
            ce, kd = kd_terms(logits, t_logits, yb, kd_alpha, kd_temperature, seen=seen, seen_fraction=seen_fraction)
            loss = combined(ce, kd, kd_alpha)  # its parts kept for the epochs table
        if loss_module is not None:
            if detach_features:  # Yoo & Kweon: stop the module's gradient into the backbone
                feats = [f.detach() for f in feats]
            if per_sample is None:
                per_sample = F.cross_entropy(logits.float(), yb, reduction="none")
            predicted = loss_module(feats).float()
            loss = loss + ll_weight * ranking_loss(predicted, per_sample, ll_margin)
    return loss, (logits.detach().argmax(1) == yb).sum(), ce.detach(), kd.detach()


# Two entry points with their own code objects, so that dynamo keeps their compilations apart.
def _full_batch(*args):  # noqa: ANN002, ANN202
    return batch_loss(*args)


def _partial_batch(*args):  # noqa: ANN002, ANN202
    return batch_loss(*args)


_compiled: dict[tuple[str, bool], Callable] = {}  # (device type, full batch) -> compiled function
_checked: set[tuple] = set()  # variants compiled and run once in this process
_compile_error: str | None = None  # set when compiling failed: this process trains eagerly


def compile_cache_dir() -> Path:
    """Where inductor keeps its compiled kernels: under the user's cache folder, which outlives
    reboots (inductor's own default is in /tmp). A TORCHINDUCTOR_CACHE_DIR of the user's wins."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "altui" / "inductor"


def keep_compile_cache() -> None:
    """Point inductor at compile_cache_dir(), unless the user chose a folder. (Importing parts of
    torch._dynamo already sets the variable to inductor's default, which counts as no choice.)"""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())


def compiled_function(device_type: str, full: bool) -> Callable:
    """The process's compiled step for full or partial batches on a device type."""
    key = (device_type, full)
    if key not in _compiled:
        keep_compile_cache()
        if full:  # a static shape; CUDA graphs remove the launch cost of small models
            mode = "reduce-overhead" if device_type == "cuda" else None
            _compiled[key] = torch.compile(_full_batch, dynamic=False, mode=mode)
        else:  # one dynamic-shape graph for every last batch
            _compiled[key] = torch.compile(_partial_batch, dynamic=None)
    return _compiled[key]


class TrainStep:
    """Computes `batch_loss` eagerly, or through the process's compiled functions.

    Each variant (full or partial batch, teacher, LL, detached features, settings) is compiled and run
    once on copies of the modules before the real ones use it, so that a failing compilation (or CUDA
    graph capture) changes nothing: it is logged once and training goes on eagerly.
    """

    def __init__(self, compiled: bool, device_type: str, log: Callable[[str, str], None] = lambda m, lvl: None):
        self.compiled = compiled
        self.device_type = device_type
        self.log = log
        if compiled and _compile_error is not None:
            log(f"training eagerly: torch.compile failed earlier in this process ({_compile_error})", "warning")

    @property
    def active(self) -> bool:
        return self.compiled and _compile_error is None

    def __call__(
        self, cfg: RunConfig, model: nn.Module, teacher: nn.Module | None, loss_module: nn.Module | None,
        xb: torch.Tensor, yb: torch.Tensor, seen: torch.Tensor | None, seen_fraction: torch.Tensor, detach: bool,
    ) -> tuple[torch.Tensor, ...]:
        args = (model, teacher, loss_module, xb, yb, seen, seen_fraction, detach, cfg.kd_alpha,
                cfg.kd_temperature, cfg.ll_margin, cfg.ll_weight, self.device_type == "cuda")
        if not self.active:
            return batch_loss(*args)
        full = xb.shape[0] == cfg.batch_size
        variant = (self.device_type, full, type(model).__name__, teacher is not None, loss_module is not None,
                   seen is not None, detach, *args[8:])
        try:
            if variant not in _checked:
                self._check(full, args)
                _checked.add(variant)
            return self._run(full, args)
        except Exception as e:  # noqa: BLE001 - any compiler or capture error: train eagerly instead
            self._give_up(e)
            return batch_loss(*args)

    def _run(self, full: bool, args: tuple, first: bool = False) -> tuple[torch.Tensor, ...]:
        """`first`: the variant's first call, which compiles it (a run's float settings become
        constants of the graph); later calls only run it (no per-step config switching: it costs)."""
        fn = compiled_function(self.device_type, full)
        if not full:
            for t in (args[3], args[4], args[5]):  # the batch dimension of images, labels and kd2's mask
                if t is not None:
                    torch._dynamo.maybe_mark_dynamic(t, 0)
        if first:
            with torch._dynamo.config.patch(specialize_float=True), torch.compiler.set_stance("default"):
                return self._call(fn, full, args)
        if full:
            return self._call(fn, full, args)
        with torch.compiler.set_stance("eager_on_recompile"):  # a size the graph does not cover: eager
            return fn(*args)

    def _call(self, fn: Callable, full: bool, args: tuple) -> tuple[torch.Tensor, ...]:
        if full and self.device_type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        return fn(*args)

    def _check(self, full: bool, args: tuple) -> None:
        """Compile (or find in the cache) and run this variant, forward and backward, on copies."""
        model, teacher, loss_module = (copy.deepcopy(m) if m is not None else None for m in args[:3])
        start = time.perf_counter()
        for _ in range(3 if full and self.device_type == "cuda" else 1):  # CUDA graphs: warm-up, record, replay
            loss, *_ = self._run(full, (model, teacher, loss_module, *args[3:]), first=True)
            loss.backward()
        seconds = time.perf_counter() - start
        if seconds > 1.0:
            self.log(f"compiled the training step ({'full' if full else 'last'} batch) in {seconds:.1f} s", "info")

    def _give_up(self, error: Exception) -> None:
        global _compile_error
        first = _compile_error is None
        _compile_error = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        if first:
            self.log(f"torch.compile failed, training eagerly from now on (same results): {_compile_error}",
                     "warning")


def make_optimizer(params: list[dict], cfg: RunConfig, device: torch.device) -> torch.optim.SGD:
    """SGD with momentum; one fused kernel on CUDA, foreach elsewhere (the same update)."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, **fast)


def train_round(
    cfg: RunConfig,
    round_: int,
    model: nn.Module,
    data: DeviceData,
    labeled: torch.Tensor,
    weight_decay: float,
    generator: torch.Generator,
    sink: Sink,
    teacher: nn.Module | None = None,
    seen: int = 0,
    loss_module: nn.Module | None = None,
    step: TrainStep | None = None,
    resume: EpochState | None = None,
    on_epoch: Callable[[Callable[[], EpochState]], None] | None = None,
) -> None:
    """Train `model` on the pool samples `labeled` for cfg.epochs epochs with SGD.

    teacher: the previous round's model (kd1/kd2). seen: how many leading entries of `labeled` the
    teacher was trained on (kd2 distils on those only). loss_module: Learning Loss's predictor.
    step: the run's TrainStep (compiled or not); by default one from cfg.compile. resume: this round
    saved at the end of an epoch (go on from there). on_epoch: called after every epoch with a
    function that captures the round's state there (only called when wanted: it copies the weights).
    """
    dev = labeled.device
    step = step or TrainStep(cfg.compile_on(dev.type), dev.type, sink.log)
    params = param_groups(model, weight_decay, cfg.decay_bn)
    if loss_module is not None:
        params += [{"params": list(loss_module.parameters()), "weight_decay": weight_decay}]
    opt = make_optimizer(params, cfg, dev)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones), gamma=cfg.lr_gamma)
    n = labeled.shape[0]
    kd2 = cfg.distill == "kd2" and teacher is not None
    is_seen = torch.arange(n, device=dev) < seen
    seen_fraction = torch.tensor(seen / n if kd2 else 1.0, device=dev)  # |D_{t-1}| / |D_t|
    if teacher is not None:
        teacher.eval()
    first = 1
    if resume is not None:
        model.load_state_dict(resume.model)
        if loss_module is not None and resume.loss_module is not None:
            loss_module.load_state_dict(resume.loss_module)
        opt.load_state_dict(resume.optimizer)  # momentum, and the lr the schedule had reached
        sched.last_epoch = resume.epochs_done  # MultiStepLR decays at milestones counted from here
        generator.set_state(resume.generator)
        first = resume.epochs_done + 1

    def state(epoch: int) -> EpochState:
        return EpochState(round_, epoch, _cpu(model), opt.state_dict(), generator.get_state(),
                          _cpu(loss_module) if loss_module is not None else None)

    for epoch in range(first, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        if loss_module is not None:
            loss_module.train()
        detach = loss_module is not None and epoch > cfg.ll_stop
        lr = opt.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=dev)
        parts_sum = torch.zeros(2, device=dev)  # CE, alpha * T^2 * KL
        correct = torch.zeros((), device=dev, dtype=torch.long)
        perm = torch.randperm(n, device=dev, generator=generator)
        for s in range(0, n, cfg.batch_size):
            pos = perm[s:s + cfg.batch_size]
            idx = labeled[pos]
            xb = data.x[idx]
            if data.augment:
                xb = crop_flip(xb, generator)
            xb, yb = data.normalize(xb), data.y[idx]
            loss, hits, ce, kd = step(cfg, model, teacher, loss_module, xb, yb,
                              is_seen[pos].float() if kd2 else None, seen_fraction, detach)
            loss_sum += loss.detach() * idx.shape[0]  # before backward: CUDA graphs reuse output memory
            parts_sum += torch.stack((ce, kd)) * idx.shape[0]
            correct += hits
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        loss_value, correct_value = loss_sum.item(), correct.item()  # the epoch's one host sync
        ce_value, kd_value = (parts_sum / n).tolist()
        seconds = time.perf_counter() - start
        sink.epoch_done(EpochStats(
            round=round_, epoch=epoch, epochs=cfg.epochs, train_loss=loss_value / n,
            train_accuracy=correct_value / n, lr=lr, images_per_second=n / max(seconds, 1e-9),
            train_ce=ce_value, train_kd=kd_value if teacher is not None else None,
        ))
        if on_epoch is not None and epoch < cfg.epochs:  # the last epoch's state is the round's
            on_epoch(lambda epoch=epoch: state(epoch))


def _cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@torch.inference_mode()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int) -> tuple[float, float, torch.Tensor]:
    """Test accuracy in [0, 1], mean cross-entropy, and which test images were right (bool [M] on the
    host): the claims' statistic needs the test set's own noise, not only the mean."""
    model.eval()
    dev = data.x_test.device
    loss_sum = torch.zeros((), device=dev)
    m = data.x_test.shape[0]
    right = torch.empty(m, device=dev, dtype=torch.bool)
    for s in range(0, m, batch_size):
        xb, yb = data.normalize(data.x_test[s:s + batch_size]), data.y_test[s:s + batch_size]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum")
        right[s:s + batch_size] = logits.argmax(1) == yb
    right = right.cpu()  # the round's one host sync, with the loss below
    return right.sum().item() / m, loss_sum.item() / m, right
