"""The Mamba paper's synthetic tasks (mambakit.data.synthetic) and their recipes' pieces."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mambakit.data.synthetic import FIRST_DATA_TOKEN, MARKER, NOISE, InductionHeads, SelectiveCopying
from mambakit.train.config import apply_overrides
from mambakit.train.recipes import find_recipe, list_recipes
from mambakit.train.synthetic_recipes import (AnswerLoss, CausalTransformerLM, answer_accuracy, answer_logits,
                                              build_model, evaluate_length, sequence_accuracy)


def induction_oracle(ids: np.ndarray, special: int) -> int:
    """The token right after the first occurrence of the special token."""
    return int(ids[int(np.flatnonzero(ids == special)[0]) + 1])


def copying_oracle(ids: np.ndarray, num_tokens: int) -> np.ndarray:
    """The non-noise tokens of the context, in order."""
    context = ids[: len(ids) - num_tokens]
    return context[context != NOISE]


def test_induction_heads_items(seed):
    rng = np.random.default_rng(seed)
    length, vocab = int(rng.integers(3, 300)), int(rng.integers(3, 20))
    data = InductionHeads(length, 64, vocab, "train", seed)
    special = vocab - 1
    for i in range(len(data)):
        ids, target = data[i]
        assert ids.shape == (length,) and ids.dtype == torch.int64
        assert target.shape == (1,) and target.dtype == torch.int64
        ids_np = ids.numpy()
        assert ids_np[-1] == special and (ids_np == special).sum() == 2
        assert ids_np.min() >= 0 and ids_np.max() < vocab and 0 <= int(target) < special
        assert induction_oracle(ids_np, special) == int(target)
    assert data.num_targets == 1 and len(data) == 64


def test_selective_copying_items(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 17))
    length, vocab = int(rng.integers(2 * n, 400)), int(rng.integers(3, 20))
    data = SelectiveCopying(length, 32, n, vocab, "val", seed)
    for i in range(len(data)):
        ids, target = data[i]
        assert ids.shape == (length,) and target.shape == (n,)
        ids_np = ids.numpy()
        assert (ids_np[-n:] == MARKER).all()
        assert (target.numpy() >= FIRST_DATA_TOKEN).all() and (target.numpy() < vocab).all()
        np.testing.assert_array_equal(copying_oracle(ids_np, n), target.numpy())
    assert data.num_targets == n


def test_items_are_fixed_per_seed_and_split(seed):
    a = InductionHeads(128, 8, 16, "test", seed)
    b = InductionHeads(128, 8, 16, "test", seed)
    for i in range(8):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    assert torch.equal(a[-1][0], a[7][0])
    other_split = InductionHeads(128, 8, 16, "train", seed)
    other_seed = InductionHeads(128, 8, 16, "test", seed + 1)
    assert not all(torch.equal(a[i][0], other_split[i][0]) for i in range(8))
    assert not all(torch.equal(a[i][0], other_seed[i][0]) for i in range(8))
    c, d = SelectiveCopying(64, 4, 8, seed=seed), SelectiveCopying(64, 4, 8, seed=seed)
    assert all(torch.equal(c[i][0], d[i][0]) for i in range(4))


@pytest.mark.parametrize("make, error", [
    (lambda: InductionHeads(2), ValueError),                   # too short for a query and an answer
    (lambda: InductionHeads(64, 0), ValueError),
    (lambda: InductionHeads(64, vocab_size=2), ValueError),
    (lambda: InductionHeads(64.0), TypeError),
    (lambda: InductionHeads(True), TypeError),
    (lambda: InductionHeads(64, split="dev"), ValueError),
    (lambda: InductionHeads(64, seed=-1), ValueError),
    (lambda: SelectiveCopying(31, num_tokens=16), ValueError),  # context shorter than the tokens to copy
    (lambda: SelectiveCopying(64, num_tokens=0), ValueError),
    (lambda: SelectiveCopying(64, vocab_size=2), ValueError),
])
def test_bad_arguments(make, error):
    with pytest.raises(error):
        make()


def test_bad_index():
    data = InductionHeads(16, 4)
    with pytest.raises(IndexError):
        data[4]
    with pytest.raises(TypeError):
        data[1.0]


def test_loss_and_accuracy_on_known_logits(seed):
    rng = np.random.default_rng(seed)
    targets = torch.from_numpy(rng.integers(0, 5, size=(6, 3)))
    logits = torch.zeros(6, 10, 8, dtype=torch.float64)
    logits[:, -3:, :5].scatter_(-1, targets.unsqueeze(-1), 5.0)      # every answer right...
    logits[0, -1, (int(targets[0, -1]) + 1) % 5] = 10.0                # ...except the last one of item 0
    scores = logits[:, -3:, :5].numpy()
    assert answer_accuracy(targets.numpy(), scores) == pytest.approx(17 / 18)
    assert sequence_accuracy(targets.numpy(), scores) == pytest.approx(5 / 6)
    loss = AnswerLoss(3, 5)(logits, targets)
    expected = torch.nn.functional.cross_entropy(logits[:, -3:, :5].float().reshape(-1, 5), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError):
        answer_accuracy(targets.numpy(), scores[:, :, 0])


@pytest.mark.parametrize("arch", ["mamba1", "mamba2"])
def test_chunked_recurrent_scoring_equals_one_pass(arch, seed):
    torch.manual_seed(seed)
    # the reference scan keeps Numba's first-call compile out of this test; the chunking is the same
    extra = {"headdim": 16, "chunk_size": 16} if arch == "mamba2" else {"impl": "reference"}
    model = build_model(arch, 16, {"d_model": 32, "n_layer": 2, "d_state": 8, **extra}).eval()
    ids = torch.randint(0, 16, (2, 77))
    whole = answer_logits(model, ids, 3)
    chunked = answer_logits(model, ids, 3, chunk_size=19)      # 77 = 4 x 19 + 1: last chunk merged
    assert chunked.shape == whole.shape == (2, 3, model.config.padded_vocab_size)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)


def test_transformer_kv_cache_matches_full_forward(seed):
    torch.manual_seed(seed)
    model = CausalTransformerLM(11, d_model=32, n_layer=2, n_heads=4, d_ff=48).double().eval()
    ids = torch.randint(0, 11, (3, 20))
    with torch.no_grad():
        full = model(ids)
        cache = model.allocate_kv_cache(3, 20, dtype=torch.float64)
        parts = [model(ids[:, :7], cache), model(ids[:, 7:12], cache)]          # prefill, then a block
        parts += [model(ids[:, t:t + 1], cache) for t in range(12, 20)]        # then token by token
    torch.testing.assert_close(torch.cat(parts, dim=1), full)
    out = model.generate(ids[:, :5], max_new_tokens=4)
    assert out.shape == (3, 9) and torch.equal(out[:, :5], ids[:, :5])
    with pytest.raises(ValueError):
        model(ids, model.allocate_kv_cache(3, 10))


def test_recipes_train_and_score():
    recipe = find_recipe("core", "induction-heads-mamba1")
    config = apply_overrides(recipe.config(), ["max_steps=2", "batch_size=4", "data.train_length=24",
                                               "data.eval_length=24", "data.eval_samples=8"])
    parts = recipe.build(config)
    assert len(parts.train_data) == 8 and parts.eval_data.length == 24
    batch = torch.stack([parts.train_data[i][0] for i in range(4)])
    loss = parts.loss_fn(parts.model(batch), torch.stack([parts.train_data[i][1] for i in range(4)]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert 0.0 <= parts.baseline()["metrics"]["accuracy"] <= 1.0
    result = evaluate_length(parts.model, parts.eval_data, batch_size=3)
    assert result.samples == 8 and 0.0 <= result.accuracy <= 1.0 and len(result.extra["batch_seconds"]) == 3
    names = {r.name for r in list_recipes("core")}
    assert {f"{t}-{a}" for t in ("induction-heads", "selective-copying")
            for a in ("mamba1", "mamba2", "transformer")} <= names
    with pytest.raises(ValueError):
        build_model("rnn", 16)
    with pytest.raises(ValueError):
        build_model("transformer", 16, {"d_state": 16})
