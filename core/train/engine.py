"""``fit`` and ``evaluate``: one training loop for every domain.

Data convention: a dataset item is ``(inputs, targets)``. ``inputs`` is a tensor (passed as
``model(inputs)``), a tuple/list (``model(*inputs)``) or a dict (``model(**inputs)``);
``targets`` is whatever ``loss_fn`` and the metrics need (usually a tensor). The default
collate stacks items into batches, so a batch is ``(inputs (B, ...), targets (B, ...))``.

``loss_fn(outputs, targets) -> scalar tensor`` is the mean over the batch. The evaluation loss
is the sample-weighted mean of batch losses over the whole set (exact for per-sample means of
equal weight). Prediction metrics see ``predict_fn(outputs)`` (default: ``outputs``), a
per-sample ``(B, ...)`` score tensor, gathered over the full set and every process first.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from . import checkpoint as ckpt
from .budget import TimeBudget, budget_or_none, shrink_schedule
from .config import TrainConfig
from .distributed import (DistInfo, ResumableDistributedSampler, ShardSampler, all_gather_objects,
                          all_reduce_sum, barrier, setup, teardown)
from .ema import EMA
from .history import History
from .metrics import Metric, MetricLike, compute_metrics, greater_is_better, resolve_metrics
from .optim import build_optimizer, build_scheduler
from .progress import Progress, format_duration
from .seeding import get_rng_state, seed_everything, set_rng_state

LossFn = Callable[[Any, Any], torch.Tensor]
PredictFn = Callable[[Any], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN/Inf; the run stopped before updating weights."""


@dataclass
class FitResult:
    """What ``fit`` returns: the full history, the last evaluation, best score and paths."""

    history: list[dict[str, Any]]
    final_metrics: dict[str, float]
    step: int
    best_metric: Optional[float]
    best_step: Optional[int]
    output_dir: Path
    last_checkpoint: Optional[Path]
    resumed_from: Optional[Path] = None
    train_time_s: float = 0.0
    test_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics_final: dict[str, float] = field(default_factory=dict)


# ---- batches ------------------------------------------------------------------------------------
def _split_batch(batch: Any) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError("dataset items must be (inputs, targets) pairs; got a batch of type "
                    f"{type(batch).__name__}" + (f" with {len(batch)} fields" if isinstance(batch, (tuple, list)) else ""))


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    if callable(getattr(obj, "to", None)) and hasattr(obj, "num_nodes"):  # PyG Data / Batch
        return obj.to(device, non_blocking=True)
    return obj


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _first_tensor(obj: Any) -> Optional[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return obj
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else []
    for v in values:
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def _batch_len(inputs: Any, targets: Any) -> int:
    t = _first_tensor(targets)
    t = t if t is not None and t.dim() > 0 else _first_tensor(inputs)
    if t is None or t.dim() == 0:
        raise TypeError("cannot tell the batch size: inputs/targets hold no batched tensor")
    return int(t.shape[0])


def _count_tokens(inputs: Any) -> int:
    """Token ids ``(B, L)`` count as ``B * L`` tokens (for tok/s); other inputs count 0."""
    t = inputs if isinstance(inputs, torch.Tensor) else None
    if t is not None and t.dim() == 2 and not t.dtype.is_floating_point and not t.dtype.is_complex:
        return t.numel()
    return 0


def _check_loss(loss: Any) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar (mean over the batch), got shape {tuple(loss.shape)}")
    return loss


def _amp_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision='fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
        return torch.float16
    raise ValueError(f"unknown precision {precision!r}")


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_dataset(name: str, data: Any) -> None:
    if isinstance(data, IterableDataset) or not isinstance(data, Dataset):
        raise TypeError(f"{name}: expected a map-style torch.utils.data.Dataset (with __len__ and "
                        f"__getitem__), got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name} is empty")


def _loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    # a private generator keeps DataLoader from drawing on the global RNG (resume stays exact)
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + epoch * 1_009 + rank) % 2**63)
    return gen


# ---- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def _evaluate(model: nn.Module, dataset: Dataset, loss_fn: Optional[LossFn], metrics: Sequence[Metric],
              info: DistInfo, batch_size: int, amp_dtype: Optional[torch.dtype], collate_fn=None,
              predict_fn: Optional[PredictFn] = None, num_workers: int = 0) -> dict[str, float]:
    was_training = model.training
    model.eval()
    sampler = ShardSampler(len(dataset), info.world_size, info.rank)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=num_workers, pin_memory=info.device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))
    need_preds = any(m.kind == "prediction" for m in metrics)
    loss_sum, count = 0.0, 0
    scores, targets_all = [], []
    try:
        for batch in loader:
            inputs, targets = _to_device(_split_batch(batch), info.device)
            with _autocast(info.device, amp_dtype):
                outputs = _call(model, inputs)
                n = _batch_len(inputs, targets)
                if loss_fn is not None:
                    loss_sum += float(_check_loss(loss_fn(outputs, targets)).float()) * n
            count += n
            if need_preds:
                score = predict_fn(outputs) if predict_fn is not None else outputs
                if not isinstance(score, torch.Tensor) or score.dim() == 0 or score.shape[0] != n:
                    raise ValueError("prediction metrics need per-sample scores (B, ...) from predict_fn/outputs")
                scores.append(score.detach().float().cpu().numpy())
                targets_all.append(torch.as_tensor(targets).detach().cpu().numpy())
    finally:
        model.train(was_training)
    totals = all_reduce_sum(torch.tensor([loss_sum, float(count)], dtype=torch.float64), info)
    mean_loss = float(totals[0] / totals[1]) if loss_fn is not None and totals[1] > 0 else None
    y_true = y_score = None
    if need_preds:
        local = (np.asarray(sampler.indices, dtype=np.int64),
                 np.concatenate(scores) if scores else None, np.concatenate(targets_all) if targets_all else None)
        parts = [p for p in all_gather_objects(local, info) if p[1] is not None]
        y_score = np.concatenate([p[1] for p in parts])
        y_true = np.concatenate([p[2] for p in parts])
        item_ids = np.concatenate([p[0] for p in parts])
        if len(y_score) == len(item_ids):
            # One row per dataset item: put the rows back in dataset order (the same on every
            # process). Items that give several rows (node-level graph tasks, per-token scores)
            # keep each process's batch order; scores and targets stay aligned either way.
            order = np.argsort(item_ids, kind="stable")
            y_score, y_true = y_score[order], y_true[order]
    return compute_metrics(metrics, y_true, y_score, mean_loss)


def evaluate(model: nn.Module, dataset: Dataset, loss_fn: Optional[LossFn] = None,
             metrics: Optional[Iterable[MetricLike]] = None, *, batch_size: int = 32, device: str = "auto",
             precision: str = "auto", collate_fn: Optional[Callable] = None,
             predict_fn: Optional[PredictFn] = None, num_workers: int = 0) -> dict[str, float]:
    """Evaluate ``model`` on the whole ``dataset``; returns ``{"loss": ..., <metric>: ...}``.

    ``batch_size`` is per process. Under torchrun each process evaluates every
    ``world_size``-th sample and the results are combined before the metrics are computed,
    so every process returns the same numbers.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    _check_dataset("dataset", dataset)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    metric_objs = resolve_metrics(metrics)
    if loss_fn is None and not any(m.kind == "prediction" for m in metric_objs):
        raise ValueError("nothing to evaluate: pass a loss_fn and/or prediction metrics")
    info = setup(device)
    try:
        model.to(info.device)
        return _evaluate(model, dataset, loss_fn, metric_objs, info, batch_size,
                         _amp_dtype(precision, info.device), collate_fn, predict_fn, num_workers)
    finally:
        teardown(info)


# ---- training -----------------------------------------------------------------------------------
def fit(model: nn.Module, train_data: Dataset, eval_data: Optional[Dataset] = None, *, loss_fn: LossFn,
        metrics: Optional[Iterable[MetricLike]] = None, config: Optional[TrainConfig] = None,
        collate_fn: Optional[Callable] = None, predict_fn: Optional[PredictFn] = None,
        resume: Union[bool, str, Path, None] = None, test_data: Optional[Dataset] = None) -> FitResult:
    """Train ``model`` on ``train_data``; evaluate on ``eval_data``; checkpoint as it goes.

    ``test_data`` (optional) is touched once, after training: ``FitResult.test_metrics`` are
    the test metrics of the checkpoint selected on ``eval_data`` (``checkpoints/best``, by
    ``metric_for_best``; the final weights when there is no ``eval_data``), and
    ``test_metrics_final`` those of the final weights. With a validation set as ``eval_data``
    this is the usual protocol: select on validation, report test. ``model`` keeps its final
    weights.

    Writes ``<output_dir>/train_config.json``, ``metrics.jsonl`` (the history, one record per
    line) and ``checkpoints/`` (last ``keep_last`` step checkpoints and ``best/``).

    ``resume``: ``None``/``False`` starts fresh (and refuses an output_dir that already holds
    checkpoints), ``True`` continues from the latest checkpoint in ``output_dir`` if there is
    one, a path continues from that checkpoint. A resumed run replays exactly: same data
    order, schedule, optimizer and RNG states, so it ends with the weights an uninterrupted
    run would have.

    Under ``torchrun`` the model is wrapped in DistributedDataParallel, each process reads its
    share of every global batch, and only rank 0 writes files. Raises ``NonFiniteLossError``
    when the loss turns NaN/Inf (weights are not updated and no checkpoint is written).
    """
    config = (config if config is not None else TrainConfig())
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    config.validate()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(outputs, targets) -> scalar tensor")
    _check_dataset("train_data", train_data)
    if eval_data is not None:
        _check_dataset("eval_data", eval_data)
    if test_data is not None:
        _check_dataset("test_data", test_data)
    metric_objs = resolve_metrics(metrics)
    if eval_data is not None:
        greater_is_better(config.metric_for_best, metric_objs)  # validates the name early
    info = setup(config.device)
    try:
        trainer = _Trainer(model, train_data, eval_data, loss_fn, metric_objs, config, collate_fn, predict_fn, info)
        result = trainer.run(resume)
        if test_data is not None:
            trainer.run_test(test_data, result)
        return result
    finally:
        teardown(info)


class _Trainer:
    """The state of one ``fit`` call; ``run`` is the loop."""

    def __init__(self, model, train_data, eval_data, loss_fn, metrics, config: TrainConfig, collate_fn,
                 predict_fn, info: DistInfo) -> None:
        self.model, self.train_data, self.eval_data = model, train_data, eval_data
        self.loss_fn, self.metrics, self.config = loss_fn, metrics, config
        self.collate_fn, self.predict_fn, self.info = collate_fn, predict_fn, info
        self.micro = config.micro_batch_size(info.world_size)
        if len(train_data) < config.batch_size:
            raise ValueError(f"train_data has {len(train_data)} samples, fewer than one global batch "
                             f"(batch_size={config.batch_size})")
        self.steps_per_epoch = len(train_data) // config.batch_size
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.out_dir = Path(config.output_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.eval_batch = config.eval_batch_size or self.micro
        self.amp_dtype = _amp_dtype(config.precision, info.device)
        self.higher_better = (config.greater_is_better if config.greater_is_better is not None
                              else greater_is_better(config.metric_for_best, metrics) if eval_data is not None
                              else False)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        model.to(info.device)
        self.optimizer = build_optimizer(model, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, self.total_steps)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        self.step = 0
        self.best_value: Optional[float] = None
        self.best_step: Optional[int] = None
        self.last_checkpoint: Optional[Path] = None
        self.final_metrics: dict[str, float] = {}

    # -- helpers --
    def _log(self, message: str) -> None:
        if self.info.is_main:
            if getattr(self, "progress", None) is not None:
                self.progress.write(message)
            else:
                print(message, flush=True)

    def _find_resume(self, resume) -> Optional[Path]:
        latest = ckpt.latest_checkpoint(self.ckpt_root)
        if resume is None or resume is False:
            if latest is not None:
                raise ValueError(f"{self.out_dir} already holds checkpoints (latest {latest.name}); resume "
                                 "with resume=True (CLI: --resume) or choose another output_dir")
            return None
        if resume is True:
            return latest
        path = Path(resume)
        if not (path / ckpt.STATE).is_file():
            raise FileNotFoundError(f"resume: {path} is not a training checkpoint (no {ckpt.STATE})")
        return path

    def _restore(self, path: Path) -> None:
        state = ckpt.load_checkpoint(path, self.model, device=self.info.device, ema=self.ema)
        if self.config.time_budget_min > 0 and isinstance(state.get("total_steps"), int) \
                and 0 < state["total_steps"] <= self.total_steps:
            self.total_steps = state["total_steps"]  # a budget may have cut the run short already
        for key, mine in (("batch_size", self.config.batch_size), ("total_steps", self.total_steps)):
            if state.get(key) != mine:
                raise ValueError(f"cannot resume from {path}: it was trained with {key}={state.get(key)}, "
                                 f"this run has {key}={mine} (the data order / schedule would differ)")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_value = state.get("best_value")
        self.best_step = state.get("best_step")
        rng = state.get("rng") or []
        if len(rng) == self.info.world_size:
            set_rng_state(rng[self.info.rank], self.info.device)
        else:
            seed_everything(self.config.seed + self.info.rank + self.step)
            self._log(f"note: checkpoint has RNG states for {len(rng)} processes, this run has "
                      f"{self.info.world_size}; reseeded (dropout masks will differ)")

    def _apply_budget(self, budget: TimeBudget) -> None:
        """Cut ``total_steps`` (and the LR schedule's end) to what the time budget allows."""
        total = budget.estimate_total(self.step, self.total_steps)
        if total < self.total_steps:
            logged = getattr(self, "_budget_logged", None)
            if logged is None or total < 0.95 * logged or total == self.step:  # no line per 10 steps
                self._log(f"time budget {self.config.time_budget_min:g} min: {total} steps instead of "
                          f"{self.total_steps} ({budget.elapsed() / 60:.1f} min spent at step {self.step})")
                self._budget_logged = total
            self.total_steps = total
            shrink_schedule(self.scheduler, total)
            self.progress.set_total(total)

    def _save(self) -> None:
        rng = all_gather_objects(get_rng_state(self.info.device), self.info)
        if self.info.is_main:
            state = {
                "format_version": 1, "step": self.step, "epoch": self.step // self.steps_per_epoch,
                "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                "batch_size": self.config.batch_size, "world_size": self.info.world_size,
                "best_value": self.best_value, "best_step": self.best_step,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng,
            }
            self.last_checkpoint = ckpt.save_checkpoint(
                self.ckpt_root, self.step, self.model, state, self.config.to_dict(),
                None if self.ema is None else self.ema.state_dict())
            ckpt.rotate_checkpoints(self.ckpt_root, self.config.keep_last)
        barrier(self.info)

    def _run_eval(self) -> dict[str, float]:
        start = time.perf_counter()
        scope = self.ema.average_parameters(self.model) if self.ema is not None else nullcontext()
        with scope:
            metrics = _evaluate(self.model, self.eval_data, self.loss_fn, self.metrics, self.info, self.eval_batch,
                                self.amp_dtype, self.collate_fn, self.predict_fn, self.config.num_workers)
            value = metrics.get(self.config.metric_for_best)
            improved = value is not None and math.isfinite(value) and (
                self.best_value is None or (value > self.best_value if self.higher_better else value < self.best_value))
            if improved:
                self.best_value, self.best_step = float(value), self.step
                if self.info.is_main:
                    ckpt.save_best(self.ckpt_root, self.model, metrics, self.step, self.config.to_dict())
        self.history.append({"split": "eval", "step": self.step, "epoch": self.step // self.steps_per_epoch,
                             **metrics, "eval_time_s": round(time.perf_counter() - start, 3)})
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        self._log(f"eval @ step {self.step}: {shown}" + (" (best)" if improved else ""))
        self.final_metrics = metrics
        return metrics

    def _patience_spent(self) -> bool:
        """True when the last ``patience`` evaluations brought no new best (patience 0: never)."""
        if not self.config.patience or self.best_step is None:
            return False
        stale = sum(1 for r in self.history.records if r.get("split") == "eval" and r["step"] > self.best_step)
        return stale >= self.config.patience

    def _evaluate_on(self, data: Dataset) -> dict[str, float]:
        return _evaluate(self.model, data, self.loss_fn, self.metrics, self.info, self.eval_batch,
                         self.amp_dtype, self.collate_fn, self.predict_fn, self.config.num_workers)

    def run_test(self, test_data: Dataset, result: FitResult) -> None:
        """Fill ``result.test_metrics`` (best-on-eval weights) and ``test_metrics_final``."""
        scope = self.ema.average_parameters(self.model) if self.ema is not None else nullcontext()
        with scope:
            final = self._evaluate_on(test_data)
        best_dir = self.ckpt_root / ckpt.BEST
        if self.eval_data is not None and (best_dir / ckpt.WEIGHTS).is_file():
            barrier(self.info)
            keep = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            ckpt.load_weights(best_dir, self.model, device=self.info.device)
            try:
                best = self._evaluate_on(test_data)
            finally:
                self.model.load_state_dict(keep)
            best_step = json.loads((best_dir / ckpt.METRICS).read_text()).get("step") \
                if (best_dir / ckpt.METRICS).is_file() else self.best_step
        else:
            best, best_step = final, self.step
        result.test_metrics, result.test_metrics_final = best, final
        for name, metrics, step in (("test", best, best_step), ("test_final", final, self.step)):
            self.history.append({"split": name, "step": step, **metrics})
        result.history = list(self.history.records)
        self._log("test (weights selected on eval, step %s): %s" % (
            best_step, " ".join(f"{k} {v:.4f}" for k, v in best.items())))

    def _nonfinite(self, what: str, value: float, epoch: int) -> None:
        latest = ckpt.latest_checkpoint(self.ckpt_root)
        self.history.append({"split": "train", "step": self.step + 1, "epoch": epoch, "error": f"non-finite {what}",
                             "value": value})
        raise NonFiniteLossError(
            f"{what} is {value} at step {self.step + 1} (epoch {epoch}); stopped before updating the weights "
            f"and wrote no checkpoint. Last good checkpoint: {latest if latest else 'none yet'}. Lower the "
            "learning rate or enable gradient clipping (optim.grad_clip), check the data, then resume from it.")

    # -- the loop --
    def run(self, resume) -> FitResult:
        cfg, info = self.config, self.info
        resume_path = self._find_resume(resume)
        if resume_path is not None:
            self._restore(resume_path)
        else:
            seed_everything(cfg.seed + info.rank)
        self.history = History(self.out_dir / "metrics.jsonl" if info.is_main else None,
                               resume_step=self.step if resume_path is not None else None)
        if info.is_main:
            cfg.save(self.out_dir / "train_config.json")

        train_model: nn.Module = self.model
        ddp = None
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel
            ddp = DistributedDataParallel(self.model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
            train_model = ddp
        if cfg.compile:
            train_model = torch.compile(train_model)

        sampler = ResumableDistributedSampler(self.train_data, info.world_size, info.rank, shuffle=True, seed=cfg.seed)
        accum = cfg.grad_accum
        self.progress = Progress(self.total_steps, self.step, enabled=info.is_main, quiet=cfg.quiet,
                                 log_every=cfg.log_every)
        if resume_path is not None:
            self._log(f"resumed from {resume_path} at step {self.step}")
        self._log(f"training {sum(p.numel() for p in self.model.parameters()):,} parameters for "
                  f"{self.total_steps} steps ({self.steps_per_epoch} per epoch) on {info.world_size} x "
                  f"{info.device.type}, global batch {cfg.batch_size} = {info.world_size} x {accum} x {self.micro}")
        self.model.train()
        start_time = time.perf_counter()
        budget = budget_or_none(cfg.time_budget_min, self.step, info)
        window_loss, window_n, window_samples, window_tokens, window_start = 0.0, 0, 0, 0, start_time
        stop_early = False
        try:
            while self.step < self.total_steps and not stop_early:
                epoch, offset = divmod(self.step, self.steps_per_epoch)
                sampler.set_epoch(epoch)
                sampler.set_start(offset * accum * self.micro)
                loader = DataLoader(self.train_data, batch_size=self.micro, sampler=sampler, drop_last=True,
                                    collate_fn=self.collate_fn, num_workers=cfg.num_workers,
                                    pin_memory=info.device.type == "cuda",
                                    generator=_loader_generator(cfg.seed, epoch, info.rank))
                batches = iter(loader)
                for _ in range(offset, self.steps_per_epoch):
                    if self.step >= self.total_steps:
                        break
                    step_loss = torch.zeros((), dtype=torch.float64, device=info.device)
                    samples = tokens = 0
                    for i in range(accum):
                        inputs, targets = _to_device(_split_batch(next(batches)), info.device)
                        sync = ddp is None or i == accum - 1
                        with (nullcontext() if sync else ddp.no_sync()):
                            with _autocast(info.device, self.amp_dtype):
                                outputs = _call(train_model, inputs)
                                loss = _check_loss(self.loss_fn(outputs, targets))
                            self.scaler.scale(loss / accum).backward()
                        step_loss += loss.detach().double() / accum
                        samples += _batch_len(inputs, targets)
                        tokens += _count_tokens(inputs)
                    totals = all_reduce_sum(torch.stack([step_loss, torch.tensor(float(samples), dtype=torch.float64,
                                                         device=info.device), torch.tensor(float(tokens),
                                                         dtype=torch.float64, device=info.device)]), info)
                    mean_loss = float(totals[0]) / info.world_size
                    if not math.isfinite(mean_loss):
                        self._nonfinite("loss", mean_loss, epoch)
                    self.scaler.unscale_(self.optimizer)
                    grad_norm = None
                    if cfg.optim.grad_clip > 0:
                        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip))
                        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                            self._nonfinite("gradient norm", grad_norm, epoch)
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
                    if self.ema is not None:
                        self.ema.update(self.model)
                    self.step += 1
                    if budget is not None:
                        budget.observe(self.step)
                        if self.step % 10 == 0:
                            self._apply_budget(budget)
                    window_loss += mean_loss
                    window_n += 1
                    window_samples += int(totals[1])
                    window_tokens += int(totals[2])
                    self.progress.update(self.step, mean_loss, lr, int(totals[1]), int(totals[2]))
                    if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                        now = time.perf_counter()
                        seconds = max(now - window_start, 1e-9)
                        record = {"split": "train", "step": self.step, "epoch": epoch,
                                  "loss": window_loss / window_n, "lr": lr,
                                  "samples_per_s": round(window_samples / seconds, 2),
                                  "elapsed_s": round(now - start_time, 3)}
                        if window_tokens:
                            record["tokens_per_s"] = round(window_tokens / seconds, 1)
                        if grad_norm is not None:
                            record["grad_norm"] = grad_norm
                        self.history.append(record)
                        window_loss, window_n, window_samples, window_tokens, window_start = 0.0, 0, 0, 0, now
                    last = self.step == self.total_steps
                    end_of_epoch = self.step % self.steps_per_epoch == 0
                    evaluated = False
                    pause_start = time.perf_counter()
                    if self.eval_data is not None and (last or (cfg.eval_every and self.step % cfg.eval_every == 0)
                                                       or (not cfg.eval_every and end_of_epoch)):
                        self._run_eval()
                        evaluated = True
                        stop_early = not last and self._patience_spent()
                    saved = False
                    if last or stop_early or (cfg.save_every and self.step % cfg.save_every == 0) \
                            or (not cfg.save_every and evaluated):
                        self._save()
                        saved = True
                    elif not cfg.save_every and self.eval_data is None and end_of_epoch:
                        self._save()
                        saved = True
                    if evaluated or saved:  # keep eval / checkpoint time out of the throughput
                        window_start += time.perf_counter() - pause_start
                    if stop_early:
                        self._log(f"early stop at step {self.step}: {cfg.metric_for_best} has not improved for "
                                  f"{cfg.patience} evaluations (best {self.best_value:.4f} at step {self.best_step})")
                        break
        finally:
            self.progress.close()
        train_time = time.perf_counter() - start_time
        self._log(f"done: {self.step} steps in {format_duration(train_time)}; checkpoints in {self.ckpt_root}")
        return FitResult(history=list(self.history.records), final_metrics=dict(self.final_metrics),
                         step=self.step, best_metric=self.best_value, best_step=self.best_step,
                         output_dir=self.out_dir, last_checkpoint=self.last_checkpoint,
                         resumed_from=resume_path, train_time_s=train_time)
