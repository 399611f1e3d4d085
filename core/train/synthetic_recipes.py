"""The Mamba paper's synthetic tasks as core recipes, with a same-size causal Transformer baseline.

    mambakit train core induction-heads-mamba1          # also -mamba2, -transformer
    mambakit train core selective-copying-mamba1        # also -mamba2, -transformer

Setup after Gu & Dao 2023 (arXiv:2312.00752, section 4.1 and appendix E.1): 2-layer models,
Mamba of width 64 (the paper's 74K-parameter induction-heads Mamba), vocabulary 16, training at
length 256 on freshly generated sequences, Adam without weight decay, Mamba at learning rate
1e-3 and attention at 2e-4 (the paper's better learning rates). The paper trains for 200K
(induction heads) and 400K steps (selective copying, at length 4096); these recipes run far
shorter schedules (20K steps by default; ``benchmarks/synthetic.py`` trains much shorter, at length
64, on a CPU) and record what they ran. Induction heads are scored at the
last position only, selective copying at the trailing marker positions; the loss is the
cross-entropy of exactly those predictions.

The Transformer baseline (``mambakit.models.CausalTransformerLM``) is a pre-norm GPT-style stack of the same
depth and about the same parameter count as Mamba-1 (width 64, 4 heads, MLP 128), with
*sinusoidal* absolute positions, so it can be evaluated at any length (learned positions
cannot run past the training length at all; the paper compares absolute, RoPE and xPos
encodings, and all of them fail beyond 2x the training length). Attention is
``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal=True``: no ``(L, L)``
mask is ever built (``nn.TransformerEncoder``'s inference fast path needs one, 1 GiB at 16K
tokens), and it carries a key/value cache for generation benchmarks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.synthetic import InductionHeads, SelectiveCopying
from ..models import MambaConfig, MambaLMHeadModel
from ..models.transformer import CausalTransformerLM
from .config import OptimConfig, TrainConfig
from .metrics import Metric
from .recipes import RecipeParts, register_recipe

TASKS = ("induction-heads", "selective-copying")
ARCHS = ("mamba1", "mamba2", "transformer")
TRAIN_LENGTH = 256
# Test lengths of the paper's induction-heads table: 2**6 .. 2**20.
INDUCTION_LENGTHS = tuple(2 ** k for k in range(6, 21))


# ---- models, loss, metrics ------------------------------------------------------------------------
def build_model(arch: str, vocab_size: int, options: Optional[dict] = None) -> nn.Module:
    """The network of ``arch`` ("mamba1", "mamba2", "transformer") for a ``vocab_size`` task.

    ``options``: ``d_model``, ``n_layer`` and, for Mamba, ``d_state``, ``d_conv``, ``expand``
    (Mamba-2 also ``headdim``, ``chunk_size``); for the Transformer ``n_heads``, ``d_ff``.
    """
    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {ARCHS}, got {arch!r}")
    opts = dict(options or {})
    opts.pop("arch", None)
    d_model, n_layer = int(opts.pop("d_model", 64)), int(opts.pop("n_layer", 2))
    if arch == "transformer":
        n_heads, d_ff = int(opts.pop("n_heads", 4)), int(opts.pop("d_ff", 2 * d_model))
        if opts:
            raise ValueError(f"unknown Transformer options {sorted(opts)}; known: d_model, n_layer, n_heads, d_ff")
        return CausalTransformerLM(vocab_size, d_model, n_layer, n_heads, d_ff)
    layer = "Mamba1" if arch == "mamba1" else "Mamba2"
    ssm_cfg = {"layer": layer, "d_state": int(opts.pop("d_state", 16 if layer == "Mamba1" else 64)),
               "d_conv": int(opts.pop("d_conv", 4)), "expand": opts.pop("expand", 2)}
    if layer == "Mamba2":
        ssm_cfg["headdim"] = int(opts.pop("headdim", 32))
        ssm_cfg["chunk_size"] = int(opts.pop("chunk_size", 64))
    ssm_cfg.update(opts)        # anything else goes to the mixer (e.g. "impl")
    return MambaLMHeadModel(MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=vocab_size, ssm_cfg=ssm_cfg))


class AnswerLoss:
    """Cross-entropy of the predictions at the last ``num_targets`` positions:
    ``logits (B, L, V')``, ``targets (B, T)`` (only the first ``vocab_size`` logits count)."""

    def __init__(self, num_targets: int, vocab_size: int) -> None:
        self.num_targets, self.vocab_size = num_targets, vocab_size

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        last = logits[:, -self.num_targets:, : self.vocab_size].float()
        return F.cross_entropy(last.reshape(-1, self.vocab_size), targets.reshape(-1))


class AnswerLogits:
    """``predict_fn``: ``logits (B, L, V')`` -> the answer logits ``(B, T, vocab_size)``."""

    def __init__(self, num_targets: int, vocab_size: int) -> None:
        self.num_targets, self.vocab_size = num_targets, vocab_size

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, -self.num_targets:, : self.vocab_size]


def answer_accuracy(y_true, y_score) -> float:
    """Fraction of answer tokens predicted right: ``y_true (N, T)``, ``y_score (N, T, V)``."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_score.ndim != 3 or y_true.shape != y_score.shape[:2]:
        raise ValueError(f"expected targets (N, T) and scores (N, T, V), got {y_true.shape} and {y_score.shape}")
    return float((y_score.argmax(-1) == y_true).mean())


def sequence_accuracy(y_true, y_score) -> float:
    """Fraction of items with *every* answer token right (shapes as ``answer_accuracy``)."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    if y_score.ndim != 3 or y_true.shape != y_score.shape[:2]:
        raise ValueError(f"expected targets (N, T) and scores (N, T, V), got {y_true.shape} and {y_score.shape}")
    return float((y_score.argmax(-1) == y_true).all(axis=1).mean())


ACCURACY = Metric("accuracy", answer_accuracy, True)
SEQUENCE_ACCURACY = Metric("sequence_accuracy", sequence_accuracy, True)


def make_dataset(task: str, length: int, num_samples: int, split: str, seed: int = 0,
                 vocab_size: int = 16, num_tokens: int = 16) -> Union[InductionHeads, SelectiveCopying]:
    """The dataset of ``task`` ("induction-heads" or "selective-copying") at ``length``."""
    if task == "induction-heads":
        return InductionHeads(length, num_samples, vocab_size, split, seed)
    if task == "selective-copying":
        return SelectiveCopying(length, num_samples, num_tokens, vocab_size, split, seed)
    raise ValueError(f"task: expected one of {TASKS}, got {task!r}")


# ---- evaluation at any length ---------------------------------------------------------------------
@dataclass
class LengthResult:
    """Accuracy of one model at one length."""

    length: int
    samples: int
    accuracy: float
    sequence_accuracy: float
    seconds: float
    extra: dict = field(default_factory=dict)


@torch.inference_mode()
def answer_logits(model: nn.Module, input_ids: torch.Tensor, num_targets: int, chunk_size: int = 0) -> torch.Tensor:
    """Logits ``(B, T, V')`` at the last ``num_targets`` positions of ``input_ids (B, L)``.

    ``chunk_size > 0`` feeds a Mamba model ``chunk_size`` tokens at a time through its
    recurrent cache (the state carries over exactly), so memory stays flat in ``L``; other
    models take the whole sequence.
    """
    length = input_ids.shape[1]
    if chunk_size <= 0 or length <= chunk_size or not hasattr(model, "allocate_inference_cache"):
        return model(input_ids, num_last_tokens=num_targets)
    cache = model.allocate_inference_cache(input_ids.shape[0], length)
    bounds = list(range(0, length, chunk_size))
    if length - bounds[-1] < num_targets and len(bounds) > 1:
        bounds.pop()        # the last chunk must hold every scored position
    out = None
    for i, start in enumerate(bounds):
        stop = bounds[i + 1] if i + 1 < len(bounds) else length
        out = model(input_ids[:, start:stop], inference_params=cache,
                    num_last_tokens=num_targets if stop == length else 1)
        cache.seqlen_offset = stop
    return out


def evaluate_length(model: nn.Module, dataset: Union[InductionHeads, SelectiveCopying], batch_size: int = 1,
                    chunk_size: int = 0, device: Union[str, torch.device] = "cpu") -> LengthResult:
    """Accuracy of ``model`` on every item of ``dataset`` (all at one length), in batches.

    ``extra["batch_seconds"]`` holds the model time of every batch (data generation excluded).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    model.eval()
    correct = all_right = 0
    batch_seconds = []
    for first in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(first, min(first + batch_size, len(dataset)))]
        ids = torch.stack([x for x, _ in items]).to(device)
        targets = torch.stack([y for _, y in items]).to(device)                  # (B, T)
        start = time.perf_counter()
        logits = answer_logits(model, ids, dataset.num_targets, chunk_size)
        hits = logits[..., : dataset.vocab_size].argmax(-1) == targets           # (B, T)
        correct += int(hits.sum())      # int() waits for the device, so the timing is complete
        all_right += int(hits.all(dim=1).sum())
        batch_seconds.append(time.perf_counter() - start)
    n = len(dataset)
    return LengthResult(dataset.length, n, correct / (n * dataset.num_targets), all_right / n,
                        sum(batch_seconds), {"batch_seconds": batch_seconds})


# ---- recipes ----------------------------------------------------------------------------------------
MODEL_DEFAULTS = {
    "mamba1": {"arch": "mamba1", "d_model": 64, "n_layer": 2, "d_state": 16, "d_conv": 4, "expand": 2},
    "mamba2": {"arch": "mamba2", "d_model": 64, "n_layer": 2, "d_state": 64, "d_conv": 4, "expand": 2,
               "headdim": 32, "chunk_size": 64},
    "transformer": {"arch": "transformer", "d_model": 64, "n_layer": 2, "n_heads": 4, "d_ff": 128},
}
# (max_steps, batch_size, lr): the paper's batch and learning rates (appendix E.1: induction heads at
# batch 8, Mamba 1e-3, attention 2e-4; selective copying at batch 64, 1e-4) over 20K steps, a tenth
# of the paper's 200K+ (a few GPU minutes). benchmarks/synthetic.py overrides these on a CPU.
SCHEDULE = {
    ("induction-heads", "mamba1"): (20000, 8, 1e-3), ("induction-heads", "mamba2"): (20000, 8, 1e-3),
    ("induction-heads", "transformer"): (20000, 8, 2e-4),
    ("selective-copying", "mamba1"): (20000, 64, 1e-4), ("selective-copying", "mamba2"): (20000, 64, 1e-4),
    ("selective-copying", "transformer"): (20000, 64, 1e-4),
}


def default_config(task: str, arch: str) -> TrainConfig:
    steps, batch, lr = SCHEDULE[(task, arch)]
    return TrainConfig(
        output_dir=f"runs/{task}-{arch}", seed=0, max_steps=steps, batch_size=batch, eval_batch_size=64,
        eval_every=steps // 4, log_every=50, keep_last=1, metric_for_best="accuracy",
        optim=OptimConfig(lr=lr, weight_decay=0.0, betas=[0.9, 0.999], warmup_steps=0, schedule="constant",
                          grad_clip=1.0),
        model=dict(MODEL_DEFAULTS[arch]),
        data={"train_length": TRAIN_LENGTH, "eval_length": TRAIN_LENGTH, "train_samples": 0, "eval_samples": 512,
              "vocab_size": 16, "num_tokens": 16},
    )


def build(config: TrainConfig, task: str) -> RecipeParts:
    data, model_opts = dict(config.data), dict(config.model)
    vocab = int(data.get("vocab_size", 16))
    n_tokens = int(data.get("num_tokens", 16))
    train_samples = int(data.get("train_samples", 0)) or config.max_steps * config.batch_size
    if train_samples <= 0:
        raise ValueError("set data.train_samples or max_steps: the training set size follows from them")
    train = make_dataset(task, int(data.get("train_length", TRAIN_LENGTH)), train_samples, "train",
                         config.seed, vocab, n_tokens)
    evalset = make_dataset(task, int(data.get("eval_length", TRAIN_LENGTH)), int(data.get("eval_samples", 512)),
                           "val", config.seed, vocab, n_tokens)
    torch.manual_seed(config.seed)      # model init depends only on the seed
    model = build_model(model_opts.get("arch", "mamba1"), vocab, model_opts)
    metrics = [ACCURACY] + ([SEQUENCE_ACCURACY] if evalset.num_targets > 1 else [])

    def baseline() -> dict:
        """Context-free guess: the most frequent answer token of (up to) 4096 training items,
        predicted at every answer position of the evaluation set."""
        answers = np.concatenate([train[i][1].numpy() for i in range(min(len(train), 4096))])
        guess = int(np.bincount(answers, minlength=vocab).argmax())
        truth = np.stack([evalset[i][1].numpy() for i in range(len(evalset))])
        return {"name": "most frequent training answer, no context (chance level)",
                "metrics": {"accuracy": float((truth == guess).mean())}}

    what = ("recall the token after the special token's first occurrence (scored at the last position)"
            if task == "induction-heads" else
            f"copy the {n_tokens} scattered data tokens in order at the trailing markers")
    split = (f"{task} (Gu & Dao 2023, section 4.1), vocabulary {vocab}: {what}. train: {train_samples} "
             f"freshly generated sequences of length {train.length} (seed {config.seed}, split 'train'); eval: "
             f"{len(evalset)} sequences of length {evalset.length} (split 'val')")
    return RecipeParts(model=model, train_data=train, eval_data=evalset,
                       loss_fn=AnswerLoss(evalset.num_targets, vocab), metrics=metrics, config=config,
                       predict_fn=AnswerLogits(evalset.num_targets, vocab), baseline=baseline,
                       dataset_name=f"synthetic/{task}", split=split,
                       extra={"task": task, "arch": model_opts.get("arch", "mamba1")})


_DESCRIPTIONS = {
    "mamba1": "Mamba-1 (d_model 64, 2 layers, d_state 16)",
    "mamba2": "Mamba-2 (d_model 64, 2 layers, d_state 64, headdim 32)",
    "transformer": "causal Transformer (d_model 64, 2 layers, 4 heads, MLP 128, sinusoidal positions, SDPA)",
}

for _task in TASKS:
    for _arch in ARCHS:
        register_recipe("core", f"{_task}-{_arch}", 1, partial(build, task=_task),
                        config=partial(default_config, _task, _arch),
                        description=f"{_DESCRIPTIONS[_arch]} on the Mamba paper's {_task.replace('-', ' ')} "
                                    f"task, trained at length {TRAIN_LENGTH}")
