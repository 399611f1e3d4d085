"""Metrics agree with scikit-learn on the full set; the EMA follows its formula."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from mambakit.train import EMA, METRICS, compute_metrics, get_metric


@pytest.fixture
def binary():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    logits = rng.normal(size=(200, 2)) + np.eye(2)[y] * 0.8
    return y, logits


def test_binary_metrics_match_sklearn(binary):
    y, logits = binary
    pred = logits.argmax(1)
    p1 = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    names = ["accuracy", "balanced_accuracy", "f1", "mcc", "roc_auc", "average_precision"]
    got = compute_metrics([METRICS[n] for n in names], y, logits)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert got["average_precision"] == pytest.approx(skm.average_precision_score(y, p1))
    # one logit per sample gives the same ranking metrics
    single = logits[:, 1] - logits[:, 0]
    assert get_metric("roc_auc").fn(y, single) == pytest.approx(got["roc_auc"])


def test_multiclass_and_regression_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 120)
    logits = rng.normal(size=(120, 4)) + np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert METRICS["f1"].fn(y, logits) == pytest.approx(skm.f1_score(y, logits.argmax(1), average="macro"))
    assert METRICS["roc_auc"].fn(y, logits) == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    t, p = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert METRICS["mse"].fn(t, p) == pytest.approx(skm.mean_squared_error(t, p))
    assert METRICS["mae"].fn(t, p) == pytest.approx(skm.mean_absolute_error(t, p))


def test_loss_metrics_and_errors():
    got = compute_metrics([METRICS["bits_per_base"], METRICS["perplexity"]], loss=math.log(4))
    assert got == pytest.approx({"loss": math.log(4), "bits_per_base": 2.0, "perplexity": 4.0})
    with pytest.raises(ValueError, match="unknown metric"):
        get_metric("auroc")
    with pytest.raises(ValueError, match="samples"):
        METRICS["accuracy"].fn(np.zeros(3), np.zeros((4, 2)))


def test_ema_follows_the_warmed_up_formula_and_swaps():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    expected = 1.0
    for t, value in enumerate([2.0, 3.0, 5.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * value
        ema.update(model)
    assert ema.shadow["weight"][0, 0].item() == pytest.approx(expected)
    with ema.average_parameters(model):
        assert model.weight[0, 0].item() == pytest.approx(expected)
    assert model.weight[0, 0].item() == 5.0
    other = EMA(model, decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 3 and torch.equal(other.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError):
        EMA(model, decay=1.0)
