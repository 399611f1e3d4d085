"""Caduceus-style models: RC equivariance to float tolerance on random weights, BiMamba, heads."""
import pytest
import torch

from mambakit.genomics import (BiMamba, Caduceus, CaduceusConfig, DNATransformer, DNATransformerConfig,
                               RCConjoined, complement_map, count_parameters, rc_hidden, reverse_complement_ids)
from mambakit import Mamba

COMP = torch.tensor(complement_map())


def _random_model(**cfg):
    torch.manual_seed(int(torch.randint(0, 10_000, ())))
    model = Caduceus(CaduceusConfig(d_model=16, n_layer=2, d_state=4, **cfg)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))     # random weights, not just the init
    return model


def _ids(b=2, length=29):
    return torch.randint(4, 9, (b, length))


@pytest.mark.parametrize("tie", [True, False])
def test_rcps_mlm_equivariant(tie):
    model, x = _random_model(tie_projections=tie), _ids()
    x_rc = reverse_complement_ids(x)
    torch.testing.assert_close(model.forward_features(x_rc), rc_hidden(model.forward_features(x)), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(x_rc), model(x).flip(1)[..., COMP], rtol=1e-10, atol=1e-10)


def test_non_rcps_is_not_equivariant_but_conjoined_is():
    model, x = _random_model(rcps=False), _ids()
    x_rc = reverse_complement_ids(x)
    assert (model(x_rc) - model(x).flip(1)[..., COMP]).abs().max() > 1e-3
    conj = RCConjoined(model, "lm")
    torch.testing.assert_close(conj(x_rc), conj(x).flip(1)[..., COMP], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("pooling", ["mean", "max", "first", "last"])
def test_sequence_head_invariant_and_antisymmetric(pooling):
    x = _ids()
    x_rc = reverse_complement_ids(x)
    inv = _random_model(task="sequence", num_classes=3, pooling=pooling)
    torch.testing.assert_close(inv(x_rc), inv(x), rtol=1e-10, atol=1e-10)
    anti = _random_model(task="sequence", pooling=pooling, rc_mode="antisymmetric")
    y = anti(x)
    torch.testing.assert_close(anti(x_rc), y.flip(-1), rtol=1e-10, atol=1e-10)
    assert (y[:, 0] - y[:, 1]).abs().min() > 0      # not trivially zero


def test_token_head_and_padding_mask():
    x = _ids()
    model = _random_model(task="token", num_classes=3)
    out = model(x)
    assert out.shape == (2, 29, 3)
    torch.testing.assert_close(model(reverse_complement_ids(x)), out.flip(1), rtol=1e-10, atol=1e-10)
    seq = _random_model(task="sequence", rcps=False)
    mask = torch.ones_like(x, dtype=torch.bool)
    torch.testing.assert_close(seq(x, mask), seq(x))


def test_bimamba_ties_projections_and_sees_both_directions():
    torch.manual_seed(0)
    bi, uni = BiMamba(8, d_state=4), Mamba(8, d_state=4)
    assert count_parameters(bi) - count_parameters(uni) == count_parameters(uni) - uni.in_proj.weight.numel() - uni.out_proj.weight.numel()
    names = dict(bi.named_parameters())
    assert "conv1d_b.weight" in names and "in_proj_b.weight" not in names
    x = torch.randn(1, 12, 8)
    y = bi(x)
    x2 = x.clone()
    x2[:, -1] += torch.randn(8)
    assert (bi(x2)[:, 0] - y[:, 0]).abs().max() > 1e-6      # the first output depends on the last token
    assert (uni(x2)[:, 0] - uni(x)[:, 0]).abs().max() == 0  # a forward Mamba does not


def test_causal_lm_and_config_errors():
    model = Caduceus(CaduceusConfig(d_model=16, n_layer=1, bidirectional=False, rcps=False, task="causal_lm"))
    x = _ids()
    x2 = x.clone()
    x2[:, -1] = 4 + (x[:, -1] - 3) % 5
    assert torch.equal(model(x)[:, :-1], model(x2)[:, :-1])       # causal: no future leak
    with pytest.raises(ValueError, match="causal"):
        CaduceusConfig(task="causal_lm")
    with pytest.raises(ValueError, match="even"):
        CaduceusConfig(d_model=15)
    with pytest.raises(ValueError, match="num_classes=2"):
        CaduceusConfig(task="sequence", num_classes=3, rc_mode="antisymmetric")


def test_bad_input_ids():
    model = Caduceus(CaduceusConfig(d_model=8, n_layer=1, max_length=20))
    with pytest.raises(ValueError, match="exceeds max_length"):
        model(_ids(1, 21))
    with pytest.raises(ValueError, match="empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 9\)"):
        model(torch.tensor([[4, 9]]))
    with pytest.raises(TypeError):
        model(torch.randn(1, 5))


def test_save_load_and_reset_classifier(tmp_path):
    model = _random_model().float()
    x = _ids()
    model.save_pretrained(tmp_path / "m")
    loaded = Caduceus.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(loaded(x), model(x))
    loaded.reset_classifier(2, pooling="max", rc_mode="antisymmetric")
    assert loaded(x).shape == (2, 2) and loaded.config.task == "sequence"


def test_transformer_baseline_heads():
    tf = DNATransformer(DNATransformerConfig(d_model=16, n_layer=1, n_head=2, d_ff=32, max_length=64))
    x = _ids()
    assert tf(x).shape == (2, 29, 9)
    tf.reset_classifier(2)
    assert tf(x).shape == (2, 2)
    causal = DNATransformer(DNATransformerConfig(d_model=16, n_layer=1, n_head=2, d_ff=32, causal=True, task="causal_lm")).eval()
    x2 = x.clone()
    x2[:, -1] = 4 + (x[:, -1] - 3) % 5
    torch.testing.assert_close(causal(x)[:, :-1], causal(x2)[:, :-1])


def test_shipped_pretrained_checkpoint_is_equivariant():
    from pathlib import Path
    folder = Path(__file__).resolve().parents[2] / "genomics" / "checkpoints" / "klebsiella-caduceus-mlm-tiny"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"no pretrained checkpoint at {folder}")
    model = Caduceus.from_pretrained(folder).double()
    x = _ids(2, 64)
    torch.testing.assert_close(model(reverse_complement_ids(x)), model(x).flip(1)[..., COMP], rtol=1e-9, atol=1e-9)
