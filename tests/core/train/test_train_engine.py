"""fit / evaluate: resume equivalence, NaN stop, gradient accumulation, checkpoints, inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, roc_auc_score
from torch.utils.data import IterableDataset

from _train_helpers import TokenClassData, ce_loss, make_model, max_abs_diff, state_of, tiny_config
from mambakit.train import NonFiniteLossError, evaluate, fit, latest_checkpoint, list_checkpoints


class Crash(RuntimeError):
    pass


class CrashingLoss:
    """``ce_loss`` that raises on its ``crash_at``-th call (a simulated kill mid-run)."""

    def __init__(self, crash_at: int) -> None:
        self.calls, self.crash_at = 0, crash_at

    def __call__(self, logits, y):
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash("simulated interruption")
        return ce_loss(logits, y)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    # dropout (RNG), EMA, grad accumulation and two epochs: every piece of state must come back
    kwargs = dict(max_steps=10, batch_size=8, grad_accum=2, save_every=3, eval_every=5, ema_decay=0.8,
                  keep_last=5)
    train, val = TokenClassData(40), TokenClassData(10, seed=1)   # 5 steps per epoch
    full = make_model(dropout=0.2)
    ref = fit(full, train, val, loss_fn=ce_loss, metrics=["accuracy"], config=tiny_config(tmp_path / "a", **kwargs))

    model = make_model(dropout=0.2)
    # loss calls: 10 (steps 1-5) + 3 (eval at 5) + 4 (steps 6-7), so call 18 dies inside step 8;
    # the last checkpoint is step 6
    with pytest.raises(Crash):
        fit(model, train, val, loss_fn=CrashingLoss(18), metrics=["accuracy"],
            config=tiny_config(tmp_path / "b", **kwargs))
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step-00000006"

    resumed_model = make_model(seed=123, dropout=0.2)   # different init: everything comes from the checkpoint
    res = fit(resumed_model, train, val, loss_fn=ce_loss, metrics=["accuracy"],
              config=tiny_config(tmp_path / "b", **kwargs), resume=True)
    assert res.resumed_from.name == "step-00000006" and res.step == 10
    assert max_abs_diff(state_of(full), state_of(resumed_model)) <= 1e-6
    assert res.final_metrics == pytest.approx(ref.final_metrics, abs=1e-6)
    # the history file keeps what happened before the checkpoint and continues after it
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if r["split"] == "eval"]
    assert steps == [5, 10]


def test_refuses_to_overwrite_a_run_without_resume(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=2)
    fit(make_model(), TokenClassData(16), loss_fn=ce_loss, config=cfg)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        fit(make_model(), TokenClassData(16), loss_fn=ce_loss, config=cfg)


class NaNAfter:
    def __init__(self, good_calls: int) -> None:
        self.calls, self.good_calls = 0, good_calls

    def __call__(self, logits, y):
        self.calls += 1
        loss = ce_loss(logits, y)
        return loss * float("nan") if self.calls > self.good_calls else loss


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=10, save_every=2)
    model = make_model()
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 6.*step-00000004"):
        fit(model, TokenClassData(40), loss_fn=NaNAfter(5), config=cfg)
    found = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in found] == ["step-00000002", "step-00000004"]
    # the weights were not touched by the NaN step: still finite, and loadable from the checkpoint
    assert all(torch.isfinite(p).all() for p in model.parameters())
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["error"] == "non-finite loss"


def test_grad_accumulation_matches_the_large_batch(tmp_path):
    data = TokenClassData(32)
    a, b = make_model(), make_model()
    fit(a, data, loss_fn=ce_loss, config=tiny_config(tmp_path / "a", max_steps=4, batch_size=8, grad_accum=1))
    fit(b, data, loss_fn=ce_loss, config=tiny_config(tmp_path / "b", max_steps=4, batch_size=8, grad_accum=2))
    assert max_abs_diff(state_of(a), state_of(b)) < 1e-6


def test_fit_writes_history_checkpoints_and_best(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=6, eval_every=3, metric_for_best="accuracy", keep_last=1)
    result = fit(make_model(), TokenClassData(24), TokenClassData(9, seed=2), loss_fn=ce_loss,
                 metrics=["accuracy", "f1"], config=cfg)
    assert (tmp_path / "train_config.json").is_file()
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000006"]
    best = json.loads((tmp_path / "checkpoints" / "best" / "metrics.json").read_text())
    assert best["step"] == result.best_step and best["accuracy"] == result.best_metric
    train_records = [r for r in result.history if r["split"] == "train"]
    assert {"loss", "lr", "samples_per_s", "grad_norm"} <= set(train_records[0])
    assert set(result.final_metrics) == {"loss", "accuracy", "f1"}


def test_test_data_is_scored_with_the_weights_selected_on_eval(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=9, eval_every=3, metric_for_best="loss", keep_last=1)
    model = make_model()
    val, test = TokenClassData(9, seed=2), TokenClassData(11, seed=3)
    result = fit(model, TokenClassData(24), val, loss_fn=ce_loss, metrics=["accuracy"], config=cfg,
                 test_data=test)
    final_state = state_of(model)
    # test_metrics_final: the final weights; test_metrics: the best-on-validation checkpoint
    assert result.test_metrics_final == pytest.approx(evaluate(model, test, ce_loss, ["accuracy"]), rel=1e-6)
    best_model = make_model(seed=123)
    from mambakit.train import load_weights
    load_weights(tmp_path / "checkpoints" / "best", best_model)
    assert result.test_metrics == pytest.approx(evaluate(best_model, test, ce_loss, ["accuracy"]), rel=1e-6)
    assert max_abs_diff(state_of(model), final_state) == 0          # model keeps its final weights
    evals = {r["step"]: r["loss"] for r in result.history if r["split"] == "eval"}
    assert result.best_step == min(evals, key=evals.get)
    tests = [r for r in result.history if r["split"] in ("test", "test_final")]
    assert [r["step"] for r in tests] == [result.best_step, 9]
    if result.best_step != 9:
        assert result.test_metrics != result.test_metrics_final


class VariableRowsData(torch.utils.data.Dataset):
    """Items with a different number of labelled rows each (like the nodes of graphs)."""

    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = [(torch.randn(int(n), 3, generator=g), torch.randint(0, 3, (int(n),), generator=g))
                      for n in torch.randint(1, 7, (13,), generator=g)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def concat_rows(items):
    return torch.cat([x for x, _ in items]), torch.cat([y for _, y in items])


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_metrics_of_items_with_several_rows_each(seed, batch_size):
    data = VariableRowsData(seed)
    model = torch.nn.Linear(3, 3)
    x, y = concat_rows([data[i] for i in range(len(data))])
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).double().mean().item()
    got = evaluate(model, data, metrics=["accuracy"], batch_size=batch_size, collate_fn=concat_rows)
    assert got["accuracy"] == pytest.approx(expected, abs=1e-12)


def test_evaluate_uses_the_full_set_not_batch_averages():
    model = make_model().eval()
    data = TokenClassData(23, seed=3)
    out = evaluate(model, data, ce_loss, ["accuracy", "roc_auc"], batch_size=5, device="cpu")
    with torch.no_grad():
        logits = model(data.x)
    y = data.y.numpy()
    assert out["accuracy"] == pytest.approx(accuracy_score(y, logits.argmax(1).numpy()))
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, logits.softmax(1)[:, 1].numpy()))
    assert out["loss"] == pytest.approx(float(ce_loss(logits, data.y)), abs=1e-6)


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.zeros(3), torch.zeros(())


def test_bad_inputs_raise_clear_errors(tmp_path):
    cfg = tiny_config(tmp_path)
    with pytest.raises(TypeError, match="map-style"):
        fit(make_model(), Stream(), loss_fn=ce_loss, config=cfg)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        fit(make_model(), TokenClassData(4), loss_fn=ce_loss, config=cfg)
    with pytest.raises(ValueError, match="scalar"):
        fit(make_model(), TokenClassData(16), loss_fn=lambda o, y: o.sum(1), config=tiny_config(tmp_path / "c"))
    with pytest.raises(ValueError, match="unknown metric"):
        fit(make_model(), TokenClassData(16), loss_fn=ce_loss, metrics=["acc"], config=tiny_config(tmp_path / "d"))
    with pytest.raises(ValueError, match="metric_for_best"):
        fit(make_model(), TokenClassData(16), TokenClassData(4), loss_fn=ce_loss,
            config=tiny_config(tmp_path / "e", metric_for_best="mcc"))
    with pytest.raises(ValueError, match="divisible"):
        fit(make_model(), TokenClassData(16), loss_fn=ce_loss, config=tiny_config(tmp_path / "f", batch_size=6,
                                                                                  grad_accum=4))


def test_bf16_autocast_on_cpu_trains(tmp_path):
    model = make_model()
    result = fit(model, TokenClassData(16), loss_fn=ce_loss,
                 config=tiny_config(tmp_path, max_steps=2, precision="bf16"))
    assert np.isfinite(result.history[-1]["loss"])


class SlowLoss:
    """``ce_loss`` that takes at least ``seconds`` per call (a stand-in for a slow model)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, logits, y):
        import time
        time.sleep(self.seconds)
        return ce_loss(logits, y)


def test_time_budget_cuts_the_run_short_and_still_anneals_the_schedule(tmp_path):
    import time
    cfg = tiny_config(tmp_path, max_steps=100_000, batch_size=8, log_every=1, time_budget_min=6.0 / 60)
    start = time.perf_counter()
    res = fit(make_model(), TokenClassData(32), loss_fn=SlowLoss(0.02), config=cfg)
    wall = time.perf_counter() - start
    assert 30 <= res.step < 1000, res.step          # >= 20 ms a step: at most ~300 fit in 6 s
    assert wall < 6.0 + 5.0                          # the budget, plus start-up and slack for slow CI
    train = [r for r in res.history if r["split"] == "train"]
    assert train[-1]["step"] == res.step
    # the last step ran near the end of the cosine schedule (exactly at its end unless the speed
    # changed in the last steps), not at the full rate of a 100,000-step schedule
    assert train[-1]["lr"] <= 0.25 * cfg.optim.lr
    # and the learning rate never went back up after the warmup
    lrs = [r["lr"] for r in train[cfg.optim.warmup_steps:]]
    assert all(b <= a + 1e-12 for a, b in zip(lrs, lrs[1:]))


def test_time_budget_must_be_a_non_negative_number(tmp_path):
    with pytest.raises(ValueError, match="time_budget_min"):
        tiny_config(tmp_path, time_budget_min=-1.0).validate()


class SlowStartLoss:
    """``ce_loss`` whose first ``slow_calls`` calls take ``seconds`` each (kernel compilation)."""

    def __init__(self, slow_calls: int, seconds: float) -> None:
        self.calls, self.slow_calls, self.seconds = 0, slow_calls, seconds

    def __call__(self, logits, y):
        import time
        self.calls += 1
        if self.calls <= self.slow_calls:
            time.sleep(self.seconds)
        return ce_loss(logits, y)


def test_time_budget_leaves_a_slow_start_out_of_the_speed_estimate(tmp_path):
    # 5 s of "compilation" in the first 5 steps, then fast steps (~50 ms at worst): all 60 steps
    # fit in 12 s, although the first 20 steps alone suggest ~0.3 s per step (only ~40 steps)
    cfg = tiny_config(tmp_path, max_steps=60, batch_size=8, log_every=10, time_budget_min=12.0 / 60)
    res = fit(make_model(), TokenClassData(32), loss_fn=SlowStartLoss(5, 1.0), config=cfg)
    assert res.step == 60


def test_patience_stops_after_evaluations_without_a_new_best(tmp_path):
    from mambakit.train import Metric

    # A scripted metric: best at the 2nd evaluation, then worse twice -> stop at the 4th (step 8)
    scores = iter([0.5, 0.3, 0.4, 0.35, 0.2, 0.1, 0.1, 0.1])
    metric = Metric("scripted", lambda y_true, y_score: next(scores), greater_is_better=False)
    cfg = tiny_config(tmp_path / "a", max_steps=16, eval_every=2, metric_for_best="scripted", patience=2,
                      keep_last=1)
    model = make_model()
    test = TokenClassData(11, seed=3)
    result = fit(model, TokenClassData(24), TokenClassData(9, seed=2), loss_fn=ce_loss, metrics=[metric],
                 config=cfg, test_data=test)
    evals = [r["step"] for r in result.history if r["split"] == "eval"]
    assert evals == [2, 4, 6, 8] and result.step == 8
    assert result.best_step == 4 and result.best_metric == pytest.approx(0.3)
    # the stopping point is checkpointed, and test is scored with the best weights (step 4)
    assert [p.name for p in list_checkpoints(tmp_path / "a" / "checkpoints")] == ["step-00000008"]
    assert [r["step"] for r in result.history if r["split"] == "test"] == [4]
    # patience 0 trains to the end
    scores = iter([0.5, 0.3, 0.4, 0.35, 0.2, 0.1, 0.1, 0.1])
    full = fit(make_model(), TokenClassData(24), TokenClassData(9, seed=2), loss_fn=ce_loss, metrics=[metric],
               config=tiny_config(tmp_path / "b", max_steps=16, eval_every=2, metric_for_best="scripted"))
    assert full.step == 16 and full.best_step == 12
    with pytest.raises(ValueError, match="patience"):
        tiny_config(tmp_path / "c", patience=-1).validate()
