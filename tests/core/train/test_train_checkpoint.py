"""Checkpoints are atomic, rotate, and restore the exact state."""
from __future__ import annotations

import pytest
import torch

from mambakit import MambaConfig, MambaLMHeadModel
from mambakit.train import checkpoint as ckpt


def _model(seed=0):
    torch.manual_seed(seed)
    return MambaLMHeadModel(MambaConfig(d_model=8, n_layer=1, vocab_size=5))


def test_save_load_roundtrip_and_from_pretrained(tmp_path):
    model = _model()
    path = ckpt.save_checkpoint(tmp_path, 7, model, {"step": 7, "optimizer": {"x": torch.ones(2)}},
                                train_config={"seed": 0})
    assert path.name == "step-00000007"
    other = _model(seed=1)
    state = ckpt.load_checkpoint(path, other)
    assert state["step"] == 7 and torch.equal(state["optimizer"]["x"], torch.ones(2))
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    # the folder is a from_pretrained folder too
    again = MambaLMHeadModel.from_pretrained(path)
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


def test_a_failing_write_leaves_earlier_checkpoints_intact(tmp_path, monkeypatch):
    model = _model()
    good = ckpt.save_checkpoint(tmp_path, 1, model, {"step": 1})
    ckpt.save_best(tmp_path, model, {"loss": 1.0}, 1)
    before = (good / ckpt.WEIGHTS).read_bytes(), (tmp_path / "best" / ckpt.WEIGHTS).read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 2, _model(seed=3), {"step": 2})
    with pytest.raises(OSError, match="disk full"):  # same step again: the old folder survives
        ckpt.save_checkpoint(tmp_path, 1, _model(seed=3), {"step": 1})

    def broken_json(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.json, "dumps", broken_json)
    with pytest.raises(OSError):
        ckpt.save_best(tmp_path, _model(seed=4), {"loss": 0.5}, 2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000001"]
    assert (good / ckpt.WEIGHTS).read_bytes() == before[0]
    assert (tmp_path / "best" / ckpt.WEIGHTS).read_bytes() == before[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "step-00000001"]   # no temp leftovers


def test_rotation_keeps_the_last_k(tmp_path):
    model = _model()
    for step in (2, 4, 6, 8):
        ckpt.save_checkpoint(tmp_path, step, model, {"step": step})
    ckpt.save_best(tmp_path, model, {"loss": 1.0}, 2)
    removed = ckpt.rotate_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in removed] == ["step-00000002", "step-00000004"]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000006", "step-00000008"]
    assert (tmp_path / "best" / ckpt.WEIGHTS).is_file()
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000008"
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "best", model)
