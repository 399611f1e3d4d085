"""Evaluation metrics, computed once on the full evaluation set (never averaged per batch).

Two kinds:

- *prediction metrics* take ``(y_true, y_score)`` over the whole set: ``y_true`` the targets
  ``(N,)`` (class ids or values), ``y_score`` what the model gave: class scores / logits
  ``(N, C)``, one logit per sample ``(N,)`` for binary tasks, or values ``(N, ...)`` for
  regression. Class metrics use scikit-learn (accuracy, balanced accuracy, F1, MCC, ROC AUC,
  average precision); regression uses scikit-learn's MSE and MAE.
- *loss metrics* are functions of the mean evaluation loss (a mean negative log-likelihood
  in nats): ``perplexity = exp(loss)`` and ``bits_per_base = bits_per_token = loss / ln 2``.

Names are lowercase snake_case as scikit-learn names them; fractions lie in [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
from sklearn import metrics as skm


@dataclass(frozen=True)
class Metric:
    """A named metric. ``fn(y_true, y_score) -> float`` for ``kind="prediction"``;
    ``fn(mean_loss) -> float`` for ``kind="loss"``."""

    name: str
    fn: Callable[..., float]
    greater_is_better: bool
    kind: str = "prediction"

    def __post_init__(self) -> None:
        if self.kind not in ("prediction", "loss"):
            raise ValueError(f"Metric.kind: expected 'prediction' or 'loss', got {self.kind!r}")


def _as_arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape[0] != y_score.shape[0]:
        raise ValueError(f"y_true has {y_true.shape[0]} samples but y_score has {y_score.shape[0]}")
    if y_true.shape[0] == 0:
        raise ValueError("cannot compute a metric on an empty evaluation set")
    return y_true, y_score


def _labels(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Class ids ``(N,)`` from scores: argmax over ``(N, C)``, ``logit > 0`` for ``(N,)``."""
    y_true, y_score = _as_arrays(y_true, y_score)
    if y_score.ndim == 2 and y_score.shape[1] > 1:
        pred = y_score.argmax(axis=1)
    elif y_score.ndim == 1 or (y_score.ndim == 2 and y_score.shape[1] == 1):
        pred = (y_score.reshape(-1) > 0).astype(np.int64)
    else:
        raise ValueError(f"class scores: expected shape (N,) or (N, C), got {y_score.shape}")
    return y_true.reshape(-1).astype(np.int64), pred


def _probabilities(y_score: np.ndarray) -> np.ndarray:
    """Softmax over ``(N, C)``; sigmoid for one logit per sample (returns ``(N,)``)."""
    if y_score.ndim == 1 or y_score.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-y_score.reshape(-1)))
    z = y_score - y_score.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(y_true, y_score) -> float:
    t, p = _labels(y_true, y_score)
    return float(skm.accuracy_score(t, p))


def balanced_accuracy(y_true, y_score) -> float:
    t, p = _labels(y_true, y_score)
    return float(skm.balanced_accuracy_score(t, p))


def f1(y_true, y_score) -> float:
    """Binary F1 of class 1 for two classes; macro F1 for more."""
    t, p = _labels(y_true, y_score)
    binary = np.asarray(y_score).ndim == 1 or np.asarray(y_score).shape[1] <= 2
    return float(skm.f1_score(t, p, average="binary" if binary else "macro", zero_division=0))


def mcc(y_true, y_score) -> float:
    t, p = _labels(y_true, y_score)
    return float(skm.matthews_corrcoef(t, p))


def roc_auc(y_true, y_score) -> float:
    """Binary AUROC on P(class 1); one-vs-rest macro AUROC for more classes."""
    t, s = _as_arrays(y_true, y_score)
    probs = _probabilities(s)
    t = t.reshape(-1).astype(np.int64)
    if probs.ndim == 1:
        return float(skm.roc_auc_score(t, probs))
    if probs.shape[1] == 2:
        return float(skm.roc_auc_score(t, probs[:, 1]))
    return float(skm.roc_auc_score(t, probs, multi_class="ovr", average="macro",
                                   labels=np.arange(probs.shape[1])))


def average_precision(y_true, y_score) -> float:
    """Binary average precision on P(class 1); macro over one-vs-rest for more classes."""
    t, s = _as_arrays(y_true, y_score)
    probs = _probabilities(s)
    t = t.reshape(-1).astype(np.int64)
    if probs.ndim == 1:
        return float(skm.average_precision_score(t, probs))
    if probs.shape[1] == 2:
        return float(skm.average_precision_score(t, probs[:, 1]))
    onehot = np.eye(probs.shape[1], dtype=np.int64)[t]
    return float(skm.average_precision_score(onehot, probs, average="macro"))


def mse(y_true, y_pred) -> float:
    t, p = _as_arrays(y_true, y_pred)
    return float(skm.mean_squared_error(t.reshape(len(t), -1), p.reshape(len(p), -1)))


def mae(y_true, y_pred) -> float:
    t, p = _as_arrays(y_true, y_pred)
    return float(skm.mean_absolute_error(t.reshape(len(t), -1), p.reshape(len(p), -1)))


def perplexity(loss: float) -> float:
    return float(math.exp(min(loss, 700.0)))


def bits_per_token(loss: float) -> float:
    return float(loss / math.log(2.0))


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("accuracy", accuracy, True),
    Metric("balanced_accuracy", balanced_accuracy, True),
    Metric("f1", f1, True),
    Metric("mcc", mcc, True),
    Metric("roc_auc", roc_auc, True),
    Metric("average_precision", average_precision, True),
    Metric("mse", mse, False),
    Metric("mae", mae, False),
    Metric("perplexity", perplexity, False, kind="loss"),
    Metric("bits_per_base", bits_per_token, False, kind="loss"),
    Metric("bits_per_token", bits_per_token, False, kind="loss"),
]}

MetricLike = Union[str, Metric]


def get_metric(metric: MetricLike) -> Metric:
    """A ``Metric`` by name (see ``METRICS``), or the given ``Metric`` itself."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str) and metric in METRICS:
        return METRICS[metric]
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))} "
                     "(or pass a mambakit.train.Metric)")


def resolve_metrics(metrics: Optional[Iterable[MetricLike]]) -> list[Metric]:
    out = [get_metric(m) for m in (metrics or [])]
    names = [m.name for m in out]
    if len(set(names)) != len(names) or "loss" in names:
        raise ValueError(f"metric names must be unique and not 'loss', got {names}")
    return out


def greater_is_better(name: str, metrics: Sequence[Metric]) -> bool:
    """Direction of the metric called ``name`` (``loss``: lower is better)."""
    if name == "loss":
        return False
    for m in metrics:
        if m.name == name:
            return m.greater_is_better
    raise ValueError(f"metric_for_best={name!r} is not computed; available: "
                     f"{['loss'] + [m.name for m in metrics]}")


def compute_metrics(metrics: Sequence[Metric], y_true: Optional[np.ndarray] = None,
                    y_score: Optional[np.ndarray] = None, loss: Optional[float] = None) -> dict[str, float]:
    """Evaluate every metric on the full set; ``loss`` is included in the result when given."""
    out: dict[str, float] = {}
    if loss is not None:
        out["loss"] = float(loss)
    for m in metrics:
        if m.kind == "loss":
            if loss is None:
                raise ValueError(f"metric {m.name!r} needs the evaluation loss (pass a loss_fn)")
            out[m.name] = m.fn(float(loss))
        else:
            if y_true is None or y_score is None:
                raise ValueError(f"metric {m.name!r} needs predictions and targets")
            out[m.name] = m.fn(y_true, y_score)
    return out
