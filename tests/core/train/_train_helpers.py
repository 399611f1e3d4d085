"""Tiny models and datasets shared by the training-engine tests (and the torchrun worker)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from mambakit import Mamba
from mambakit.train import OptimConfig, TrainConfig


class TokenClassData(Dataset):
    """``n`` random token sequences ``(L,)``; label 1 when token 3 occurs more than token 1."""

    def __init__(self, n: int = 40, length: int = 12, vocab: int = 6, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, vocab, (n, length), generator=g)
        self.y = ((self.x == 3).sum(1) > (self.x == 1).sum(1)).long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class TinyMambaClassifier(nn.Module):
    """Embedding -> Mamba mixer -> (dropout) -> mean pool -> linear: ``(B, L) -> (B, classes)``."""

    def __init__(self, vocab: int = 6, d_model: int = 8, classes: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.mixer = Mamba(d_model, d_state=4, d_conv=2, expand=1)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embedding(x)
        h = self.dropout(self.norm(h + self.mixer(h)))
        return self.head(h.mean(1))


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def make_model(seed: int = 0, **kwargs) -> TinyMambaClassifier:
    torch.manual_seed(seed)
    return TinyMambaClassifier(**kwargs)


def tiny_config(output_dir, **overrides) -> TrainConfig:
    optim = OptimConfig(lr=2e-2, weight_decay=0.05, warmup_steps=2, min_lr_ratio=0.1, grad_clip=1.0)
    base = dict(output_dir=str(output_dir), seed=0, max_steps=8, batch_size=8, grad_accum=1, log_every=2,
                quiet=True, optim=optim)
    base.update(overrides)
    return TrainConfig(**base)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
