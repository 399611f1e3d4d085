"""The core's own recipe: a small Mamba DNA language model on Klebsiella pneumoniae genomes.

``mambakit train core klebsiella-lm-tiny`` pretrains a ``MambaLMHeadModel`` (Mamba-1) by
next-base prediction on windows of three genomes and reports the loss and bits per base on
the fourth, MGH78578 (a different sequence type, held out as the genomics recipes do). The
recorded baseline is an order-k Markov chain fit on the same training genomes and scored on
the same windows.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DNATokenizer, LMWindowDataset, dataset_path, read_fasta
from ..models import MambaConfig, MambaLMHeadModel
from .baselines import MarkovLM
from .config import OptimConfig, TrainConfig
from .recipes import RecipeParts, register_recipe

KLEBSIELLA = ("genomics", "klebsiella")
HELD_OUT = "MGH78578"


@lru_cache(maxsize=8)
def load_genome(path: str) -> tuple[np.ndarray, ...]:
    """Token ids of every record (chromosome, plasmids) of a FASTA file, ``A C G T N -> 0..4``."""
    tokenizer = DNATokenizer()
    return tuple(tokenizer.encode(r.sequence, name=f"{Path(path).name}:{r.name}") for r in read_fasta(path))


def genome_files(root: str = "") -> dict[str, Path]:
    """``{strain: path}`` of the ``*.fna[.xz|.gz]`` files in the Klebsiella folder."""
    folder = Path(root) if root else dataset_path(*KLEBSIELLA)
    if not folder.is_dir():
        raise FileNotFoundError(f"Klebsiella data folder not found: {folder}")
    files = {}
    for path in sorted(folder.iterdir()):
        for suffix in (".fna.xz", ".fna.gz", ".fna", ".fasta", ".fa"):
            if path.name.endswith(suffix):
                files[path.name[: -len(suffix)]] = path
                break
    if not files:
        raise FileNotFoundError(f"no FASTA genomes (*.fna[.xz|.gz]) in {folder}")
    return files


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, vocab_size: int = 5) -> torch.Tensor:
    """Mean next-token cross-entropy (nats): ``logits (B, L, V_padded)``, ``targets (B, L)``.

    Only the first ``vocab_size`` logits count (padding rows of the embedding are ignored).
    """
    return F.cross_entropy(logits[..., :vocab_size].float().reshape(-1, vocab_size), targets.reshape(-1))


class _LMLoss:
    """Picklable ``lm_loss`` bound to a vocabulary size."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return lm_loss(logits, targets, self.vocab_size)


def default_config() -> TrainConfig:
    return TrainConfig(
        output_dir="runs/klebsiella-lm-tiny", seed=0, max_steps=150, batch_size=16, grad_accum=1,
        eval_batch_size=32, eval_every=75, log_every=10, keep_last=2, metric_for_best="bits_per_base",
        optim=OptimConfig(lr=3e-3, weight_decay=0.1, warmup_steps=20, min_lr_ratio=0.1, grad_clip=1.0),
        model={"d_model": 64, "n_layer": 2, "d_state": 16, "d_conv": 4, "expand": 2},
        data={"root": "", "eval_genome": HELD_OUT, "seq_len": 512, "train_stride": 0, "eval_windows": 256,
              "baseline_order": 6,
              "baseline_orders": [0, 2, 4, 6, 8]},
    )


def build(config: TrainConfig) -> RecipeParts:
    data, model_opts = dict(config.data), dict(config.model)
    files = genome_files(data.get("root", ""))
    held_out = data.get("eval_genome", HELD_OUT)
    if held_out not in files:
        raise ValueError(f"data.eval_genome={held_out!r} is not among the genomes {sorted(files)}")
    seq_len = int(data.get("seq_len", 512))
    train_seqs = [s for name, path in files.items() if name != held_out for s in load_genome(str(path))]
    eval_seqs = list(load_genome(str(files[held_out])))
    if not train_seqs:
        raise ValueError("no training genome left after holding out the evaluation genome")
    eval_windows = int(data.get("eval_windows", 0)) or None
    stride = int(data.get("train_stride", 0)) or seq_len  # 0: non-overlapping windows
    train_data = LMWindowDataset(train_seqs, seq_len, stride=stride)
    eval_data = LMWindowDataset(eval_seqs, seq_len, stride=seq_len, max_windows=eval_windows)
    vocab = DNATokenizer().vocab_size
    torch.manual_seed(config.seed)  # model init depends only on the seed
    model = MambaLMHeadModel(MambaConfig(
        d_model=int(model_opts.get("d_model", 64)), n_layer=int(model_opts.get("n_layer", 2)), vocab_size=vocab,
        ssm_cfg={"layer": model_opts.get("layer", "Mamba1"), "d_state": int(model_opts.get("d_state", 16)),
                 "d_conv": int(model_opts.get("d_conv", 4)), "expand": model_opts.get("expand", 2)}))
    order = int(data.get("baseline_order", 6))
    train_names = [n for n in files if n != held_out]

    def baseline() -> dict:
        windows = np.stack([eval_data.window(i) for i in range(len(eval_data))])   # (n, seq_len + 1)
        rows = []
        for k in sorted({order, *[int(k) for k in data.get("baseline_orders", [0, 2, 4, 8])]}):
            bits = MarkovLM(k, vocab, alpha=0.5).fit(train_seqs).bits_per_token(windows)
            rows.append({"name": f"order-{k} Markov chain (add-0.5), counts from {', '.join(train_names)}",
                         "order": k, "metrics": {"bits_per_base": bits, "loss": bits * math.log(2.0),
                                                 "perplexity": 2.0 ** bits}})
        primary = next(r for r in rows if r["order"] == order)
        return {**primary, "others": [r for r in rows if r["order"] != order]}

    n_eval = len(eval_data)
    split = (f"train: windows of {seq_len} bases (stride {stride}) "
             f"from {', '.join(train_names)} ({sum(len(s) for s in train_seqs):,} bases); eval: {held_out}, "
             f"{n_eval} non-overlapping windows of {seq_len}+1 bases spread evenly over its records "
             f"({n_eval * seq_len:,} predicted bases; context restarts at each window)")
    return RecipeParts(model=model, train_data=train_data, eval_data=eval_data, loss_fn=_LMLoss(vocab),
                       metrics=["bits_per_base", "perplexity"], config=config, baseline=baseline,
                       dataset_name="genomics/klebsiella", split=split)


register_recipe("core", "klebsiella-lm-tiny", 1, build, config=default_config,
                description="Mamba-1 DNA LM (d_model 64, 2 layers) on 3 Klebsiella genomes; "
                            "bits per base on held-out MGH78578")
