"""Genomics recipes on the Klebsiella pneumoniae genomes (MGH78578 held out as the test genome).

- ``klebsiella-caduceus-mlm-tiny``: masked-LM pretraining of an RCPS BiMamba (Caduceus-style) on
  NTUH-K2044, Kp1084 and HS11286; bits per masked base on MGH78578. Baselines in the same
  harness (same windows, same masks, same steps): a Transformer encoder of about the same size,
  and a masked k-mer Markov model (3 bases each side: order 6).
- ``klebsiella-coding-tiny``: coding vs non-coding 200-bp windows (balanced, from the Prodigal
  gene calls), RC-invariant head.
- ``klebsiella-strand-tiny``: gene strand of 200-bp windows inside genes, RC-antisymmetric head
  (the prediction for the reverse complement is the other strand, by construction).

The fine-tuning recipes start from ``data.pretrained`` (a folder written by ``save_pretrained``
or the engine's ``checkpoints/best``) and record, as baselines, the same model from scratch,
the Transformer (from its own pretrained checkpoint, ``data.transformer_pretrained``, and from
scratch) and k-mer logistic regression, all on the same windows.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from mambakit.data import dataset_path
from mambakit.train import OptimConfig, RecipeParts, TrainConfig, fit, register_recipe
from mambakit.train.metrics import accuracy, mcc

from .baselines import KmerLogistic, MaskedMarkov
from .data import ArrayWindowDataset, MLMWindowDataset, labelled_windows, load_genome_ids, read_gff
from .models import (Caduceus, CaduceusConfig, DNATransformer, DNATransformerConfig, count_parameters,
                     masked_lm_loss)

KLEBSIELLA = ("genomics", "klebsiella")
HELD_OUT = "MGH78578"


def klebsiella_files(root: str = "") -> dict[str, tuple[Path, Path]]:
    """``{strain: (fasta, gff)}`` in the Klebsiella folder; ``FileNotFoundError`` naming a
    missing file."""
    folder = Path(root) if root else dataset_path(*KLEBSIELLA)
    out = {}
    for fna in sorted(folder.glob("*.fna.xz")) + sorted(folder.glob("*.fna.gz")) + sorted(folder.glob("*.fna")):
        strain = fna.name.split(".fna")[0]
        gff = folder / f"{strain}.prodigal.gff.gz"
        if not gff.is_file():
            raise FileNotFoundError(f"gene calls not found: {gff}")
        out[strain] = (fna, gff)
    if not out:
        raise FileNotFoundError(f"no *.fna[.xz|.gz] genomes in {folder}")
    return out


@lru_cache(maxsize=8)
def _genome(path: str) -> dict[str, np.ndarray]:
    return load_genome_ids(path)


def _split_strains(data: dict) -> tuple[dict, list[str], str]:
    files = klebsiella_files(data.get("root", ""))
    held_out = data.get("eval_genome", HELD_OUT)
    if held_out not in files:
        raise ValueError(f"data.eval_genome={held_out!r} is not among the genomes {sorted(files)}")
    return files, [s for s in files if s != held_out], held_out


def _caduceus_config(model: dict, **task: Any) -> CaduceusConfig:
    keys = ("d_model", "n_layer", "d_state", "d_conv", "expand", "bidirectional", "tie_projections", "rcps")
    return CaduceusConfig(**{k: model[k] for k in keys if k in model}, **task)


def _transformer_config(model: dict, max_length: int, **task: Any) -> DNATransformerConfig:
    t = model.get("transformer", {})
    return DNATransformerConfig(d_model=int(t.get("d_model", 32)), n_layer=int(t.get("n_layer", 2)),
                                n_head=int(t.get("n_head", 4)), d_ff=int(t.get("d_ff", 128)),
                                max_length=max_length, **task)


def _sub_config(config: TrainConfig, name: str) -> TrainConfig:
    """The same training settings, writing to ``<output_dir>/<name>``."""
    return replace(config, output_dir=str(Path(config.output_dir) / name), recipe=config.recipe)


# ---- 1. masked-LM pretraining -----------------------------------------------------------------------
def mlm_config() -> TrainConfig:
    return TrainConfig(
        output_dir="runs/klebsiella-caduceus-mlm-tiny", seed=0, max_steps=60, batch_size=16,
        eval_batch_size=32, eval_every=60, log_every=10, keep_last=1, metric_for_best="bits_per_base",
        optim=OptimConfig(lr=4e-3, weight_decay=0.05, warmup_steps=10, min_lr_ratio=0.1, grad_clip=1.0),
        model={"d_model": 64, "n_layer": 2, "d_state": 16, "d_conv": 4, "expand": 2, "bidirectional": True,
               "tie_projections": True, "rcps": True,
               "transformer": {"d_model": 32, "n_layer": 2, "n_head": 4, "d_ff": 96}},
        data={"root": "", "eval_genome": HELD_OUT, "seq_len": 256, "mask_prob": 0.15, "eval_windows": 128,
              "markov_k": 3},
    )


def build_mlm(config: TrainConfig) -> RecipeParts:
    data, model_opts = dict(config.data), dict(config.model)
    files, train_strains, held_out = _split_strains(data)
    seq_len = int(data.get("seq_len", 256))
    train_seqs = [s for st in train_strains for s in _genome(str(files[st][0])).values()]
    eval_seqs = list(_genome(str(files[held_out][0])).values())
    mask_prob = float(data.get("mask_prob", 0.15))
    train_data = MLMWindowDataset(train_seqs, seq_len, mask_prob)
    eval_data = MLMWindowDataset(eval_seqs, seq_len, mask_prob, max_windows=int(data.get("eval_windows", 128)),
                                 fixed_masks=True, seed=1)
    torch.manual_seed(config.seed)
    model = Caduceus(_caduceus_config(model_opts, task="mlm"))

    def baseline() -> dict:
        torch.manual_seed(config.seed)
        tf = DNATransformer(_transformer_config(model_opts, seq_len, task="mlm"))
        sub = _sub_config(config, "transformer")
        res = fit(tf, train_data, eval_data, loss_fn=masked_lm_loss, metrics=["bits_per_base", "perplexity"],
                  config=sub)
        batch = [eval_data[i] for i in range(len(eval_data))]
        inputs = torch.stack([b[0] for b in batch]).numpy()
        targets = torch.stack([b[1] for b in batch]).numpy()
        k = int(data.get("markov_k", 3))
        rows = []
        for kk in sorted({0, 1, 2, k}):
            bits = MaskedMarkov(kk).fit(train_seqs).bits_per_base(inputs, targets)
            rows.append({"name": f"masked Markov, {kk} bases each side (order {2 * kk}), add-0.5, counts from "
                                 f"{', '.join(train_strains)}; same corrupted inputs, backs off at [MASK]",
                         "order": 2 * kk, "metrics": {"bits_per_base": bits, "loss": bits * math.log(2.0)}})
        markov = next(r for r in rows if r["order"] == 2 * k)
        return {"name": f"Transformer encoder (MLM), {count_parameters(tf):,} parameters, same windows/masks/steps",
                "metrics": res.final_metrics, "checkpoint": str(Path(sub.output_dir) / "checkpoints" / "best"),
                "others": [markov] + [r for r in rows if r is not markov],
                "model_parameters": {"caduceus": count_parameters(model), "transformer": count_parameters(tf)}}

    split = (f"train: {seq_len}-base windows (stride {seq_len}) of {', '.join(train_strains)} "
             f"({sum(len(s) for s in train_seqs):,} bases), 15% of bases per window masked (80/10/10); eval: "
             f"{held_out}, {len(eval_data)} windows spread evenly over its records, fixed masks "
             f"({len(eval_data) * eval_data.n_mask:,} scored bases); metric = bits per masked base")
    return RecipeParts(model=model, train_data=train_data, eval_data=eval_data, loss_fn=masked_lm_loss,
                       metrics=["bits_per_base", "perplexity"], config=config, baseline=baseline,
                       dataset_name="genomics/klebsiella", split=split)


# ---- 2./3. fine-tuning -----------------------------------------------------------------------------
def finetune_config(task: str) -> TrainConfig:
    return TrainConfig(
        output_dir=f"runs/klebsiella-{task}-tiny", seed=0, max_steps=30, batch_size=16, eval_batch_size=64,
        eval_every=30, log_every=10, keep_last=1, metric_for_best="mcc",
        optim=OptimConfig(lr=3e-3, weight_decay=0.05, warmup_steps=3, min_lr_ratio=0.1, grad_clip=1.0),
        model={"d_model": 64, "n_layer": 2, "d_state": 16, "d_conv": 4, "expand": 2, "bidirectional": True,
               "tie_projections": True, "rcps": True, "pooling": "mean",
               "transformer": {"d_model": 32, "n_layer": 2, "n_head": 4, "d_ff": 96}},
        data={"root": "", "eval_genome": HELD_OUT, "task": task, "window": 200, "train_per_class": 900,
              "test_per_class": 200, "kmer_k": 5, "rc_augment": True,
              "pretrained": "genomics/checkpoints/klebsiella-caduceus-mlm-tiny",
              "transformer_pretrained": "genomics/checkpoints/klebsiella-transformer-mlm-tiny"},
    )


def _windows(files, strains, task, window, per_class, seed) -> tuple[np.ndarray, np.ndarray]:
    ids, labels = [], []
    share = [per_class // len(strains) + (i < per_class % len(strains)) for i in range(len(strains))]
    for i, st in enumerate(strains):
        fna, gff = files[st]
        x, y = labelled_windows(_genome(str(fna)), read_gff(gff), task, window, share[i], seed=seed + i)
        ids.append(x)
        labels.append(y)
    return np.concatenate(ids), np.concatenate(labels)


def _load_backbone(model: nn.Module, folder: str) -> None:
    """Copy the backbone weights of a saved model (``config.json`` + ``model.safetensors``)."""
    path = Path(folder)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"pretrained checkpoint not found: {path / 'model.safetensors'} "
                                "(run the MLM recipe first, or set data.pretrained='' to train from scratch)")
    pre = type(model).from_pretrained(path)
    model.backbone.load_state_dict(pre.backbone.state_dict())


def _saved_max_length(folder: str) -> int:
    """``max_length`` in the ``config.json`` of a saved DNATransformer (0 when absent)."""
    import json

    path = Path(folder) / "config.json"
    try:
        return int(json.loads(path.read_text()).get("max_length", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def build_finetune(config: TrainConfig) -> RecipeParts:
    data, model_opts = dict(config.data), dict(config.model)
    task = data.get("task", "coding")
    files, train_strains, held_out = _split_strains(data)
    window = int(data.get("window", 200))
    seed = config.seed
    x_tr, y_tr = _windows(files, train_strains, task, window, int(data.get("train_per_class", 900)), seed)
    x_te, y_te = _windows(files, [held_out], task, window, int(data.get("test_per_class", 200)), seed + 100)
    rc_map = [1, 0] if task == "strand" else None
    train_data = ArrayWindowDataset(x_tr, y_tr, rc_augment=bool(data.get("rc_augment", True)), rc_label_map=rc_map)
    eval_data = ArrayWindowDataset(x_te, y_te)
    head = dict(task="sequence", num_classes=2, pooling=model_opts.get("pooling", "mean"),
                rc_mode="antisymmetric" if task == "strand" else "invariant")
    loss_fn = nn.CrossEntropyLoss()
    metrics = ["accuracy", "mcc", "roc_auc"]

    def caduceus(pretrained: str) -> Caduceus:
        torch.manual_seed(config.seed)
        m = Caduceus(_caduceus_config(model_opts, **head))
        if pretrained:
            _load_backbone(m, pretrained)
        return m

    def transformer(pretrained: str) -> DNATransformer:
        torch.manual_seed(config.seed)
        # learned positions: keep the pretrained table's length so its weights load unchanged
        length = max(window, 256, _saved_max_length(pretrained) if pretrained else 0)
        m = DNATransformer(_transformer_config(model_opts, length, **head))
        if pretrained:
            _load_backbone(m, pretrained)
        return m

    pretrained = data.get("pretrained", "")
    model = caduceus(pretrained)

    def baseline() -> dict:
        rows = []
        runs = [("caduceus-scratch", "Caduceus (RCPS BiMamba), same size, from scratch", lambda: caduceus(""))]
        if data.get("transformer_pretrained"):
            runs.append(("transformer-pretrained", "Transformer encoder, MLM-pretrained on the same genomes",
                         lambda: transformer(data["transformer_pretrained"])))
        runs.append(("transformer-scratch", "Transformer encoder, from scratch", lambda: transformer("")))
        for sub, name, make in runs:
            m = make()
            res = fit(m, train_data, eval_data, loss_fn=loss_fn, metrics=metrics, config=_sub_config(config, sub))
            rows.append({"name": f"{name}, {count_parameters(m):,} parameters, same windows and steps",
                         "metrics": res.final_metrics, "best_eval": res.best_metric})
        k = int(data.get("kmer_k", 5))
        prob = KmerLogistic(k, seed=seed).fit(x_tr, y_tr).predict_proba(x_te)
        rows.append({"name": f"logistic regression on 1..{k}-mer spectra (scikit-learn)",
                     "metrics": {"accuracy": accuracy(y_te, prob), "mcc": mcc(y_te, prob)}})
        primary = next(r for r in rows if r["name"].startswith("Transformer encoder, MLM")) \
            if data.get("transformer_pretrained") else rows[0]
        return {**primary, "others": [r for r in rows if r is not primary]}

    what = ("coding (window inside CDSs) vs non-coding (overlapping no CDS)" if task == "coding" else
            "gene strand (+ vs -) of windows inside CDSs of one strand")
    split = (f"{what}; {window}-bp windows, balanced, from Prodigal gene calls. train: {len(y_tr)} windows "
             f"from {', '.join(train_strains)}" + (" (random reverse-complement augmentation)" if data.get("rc_augment", True) else "")
             + f"; test: {len(y_te)} windows from {held_out}. Model "
             + (f"fine-tuned from {pretrained}" if pretrained else "from scratch"))
    return RecipeParts(model=model, train_data=train_data, eval_data=eval_data, loss_fn=loss_fn, metrics=metrics,
                       config=config, baseline=baseline, dataset_name="genomics/klebsiella", split=split)


register_recipe("genomics", "klebsiella-caduceus-mlm-tiny", 1, build_mlm, config=mlm_config,
                description="RCPS BiMamba (Caduceus-style, d_model 64, 2 layers) masked-LM on 3 Klebsiella "
                            "genomes; bits per masked base on held-out MGH78578")
register_recipe("genomics", "klebsiella-coding-tiny", 1, build_finetune, config=lambda: finetune_config("coding"),
                description="coding vs non-coding 200-bp windows; fine-tuned RCPS BiMamba vs scratch, "
                            "Transformer and k-mer baselines; test genome MGH78578")
register_recipe("genomics", "klebsiella-strand-tiny", 1, build_finetune, config=lambda: finetune_config("strand"),
                description="gene strand of 200-bp windows; RC-antisymmetric fine-tuned RCPS BiMamba vs "
                            "scratch, Transformer and k-mer baselines; test genome MGH78578")
