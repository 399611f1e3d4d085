"""TrainConfig overrides / serialisation, no-weight-decay groups, the learning-rate schedule."""
from __future__ import annotations

import math

import pytest
import torch

from mambakit import MambaConfig, MambaLMHeadModel
from mambakit.train import OptimConfig, TrainConfig, WarmupSchedule, apply_overrides, build_optimizer, param_groups
from mambakit.train.optim import build_scheduler


def test_overrides_parse_by_field_type_and_roundtrip(tmp_path):
    cfg = TrainConfig(model={"d_model": 64, "name": "x"})
    out = apply_overrides(cfg, ["optim.lr=3e-4", "max_steps=100", "compile=true", "greater_is_better=none",
                                "optim.betas=[0.8, 0.9]", "model.d_model=128", "data.seq_len=256",
                                "output_dir=runs/a=b"])
    assert out.optim.lr == 3e-4 and out.max_steps == 100 and out.compile is True
    assert out.greater_is_better is None and out.optim.betas == [0.8, 0.9]
    assert out.model == {"d_model": 128, "name": "x"} and out.data == {"seq_len": 256}
    assert out.output_dir == "runs/a=b"
    assert cfg.optim.lr == 1e-3 and cfg.model["d_model"] == 64   # the original is untouched
    path = out.save(tmp_path / "c.json")
    assert TrainConfig.load(path) == out


@pytest.mark.parametrize("item, match", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("max_steps=abc", "max_steps"),
    ("max_steps=1.5", "integer"),
    ("compile=maybe", "true/false"),
    ("batch_size", "key=value"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("precision=fp8", "precision"),
    ("model.d_model=big", "model.d_model"),
])
def test_bad_overrides_name_the_key(item, match):
    cfg = TrainConfig(model={"d_model": 64})
    with pytest.raises(ValueError, match=match):
        apply_overrides(cfg, [item])


def test_unknown_keys_in_a_saved_config_are_rejected():
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_dict({"max_stepz": 3})
    with pytest.raises(ValueError, match="world_size"):
        TrainConfig(batch_size=8, grad_accum=2).micro_batch_size(3)


def test_no_weight_decay_groups_on_a_mamba_lm():
    torch.manual_seed(0)
    model = MambaLMHeadModel(MambaConfig(d_model=16, n_layer=2, vocab_size=5, d_intermediate=32))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    nd = set(no_decay["names"])
    for name in ("backbone.embedding.weight", "backbone.norm_f.weight", "backbone.layers.0.norm.weight",
                 "backbone.layers.0.mixer.A_log", "backbone.layers.0.mixer.D", "backbone.layers.0.mixer.dt_proj.bias",
                 "backbone.layers.0.mixer.conv1d.bias"):
        assert name in nd, name
    d = set(decay["names"])
    for name in ("backbone.layers.0.mixer.in_proj.weight", "backbone.layers.0.mixer.out_proj.weight",
                 "backbone.layers.0.mixer.x_proj.weight", "backbone.layers.0.mixer.dt_proj.weight",
                 "backbone.layers.0.mixer.conv1d.weight", "backbone.layers.1.mlp.fc1.weight"):
        assert name in d, name
    # the tied LM head is the embedding's tensor: counted once, without decay
    all_params = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(all_params) == len(set(all_params)) == len(list(model.parameters()))
    assert "lm_head.weight" not in d | nd


def test_adamw_applies_decay_only_to_the_decay_group():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model, OptimConfig(lr=0.1, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()   # no gradients: only decoupled weight decay could move parameters, and it does not run
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["0.weight"], before["0.weight"] * (1 - 0.1 * 0.5))
    for name in ("0.bias", "1.weight", "1.bias"):
        assert torch.equal(after[name], before[name])


def test_schedule_values():
    s = WarmupSchedule(warmup_steps=4, total_steps=14, schedule="cosine", min_lr_ratio=0.1)
    assert [s(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(4) == pytest.approx(1.0)
    assert s(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 9)))
    assert s(13) == pytest.approx(0.1) and s(20) == pytest.approx(0.1)
    lin = WarmupSchedule(0, 11, "linear", 0.0)
    assert [lin(i) for i in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    assert WarmupSchedule(2, 10, "constant")(7) == 1.0
    with pytest.raises(ValueError):
        WarmupSchedule(2, 10, "step")


def test_scheduler_drives_the_optimizer_and_roundtrips_weights_only(tmp_path):
    model = torch.nn.Linear(2, 2)
    cfg = OptimConfig(lr=1.0, warmup_steps=2, min_lr_ratio=0.0)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, total_steps=6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == [0.5, 1.0] and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["lr_lambdas"][0]["total_steps"] == 6
