"""Recipes on the Free Spoken Digit Dataset (``../shared/data/audio/fsdd``, 2,500 clips, 5 speakers).

    mambakit train audio fsdd-audio-mamba --record     # bidirectional patch Mamba (AuM-like)
    mambakit train audio fsdd-frame-mamba --record     # causal frame Mamba (streams)
    mambakit train audio fsdd-ast --record             # AST-style baseline: timm ViT blocks, same patches

``data.protocol=standard`` (default): index 0-4 of every speaker/digit is test (250 clips);
``data.protocol=speaker:<name>``: leave that speaker out (500 test clips). Leave-one-speaker-out
for all five speakers (george jackson lucas nicolas theo)::

    for s in george jackson lucas nicolas theo; do
      mambakit train audio fsdd-audio-mamba --set data.protocol=speaker:$s \
        --set output_dir=runs/fsdd-audio-mamba-loso-$s \
        --record benchmarks/results/recipes/fsdd-audio-mamba-loso-$s.json
    done

The step budgets (frame Mamba 300 steps of 32 clips = 4.3 epochs, patch Mamba 200 of 16, AST 400 of 32) are sized for a shared
2-core CPU (each run under 8 minutes); on a GPU raise ``max_steps`` (e.g. ``--set max_steps=2000``).

Clips are resampled 8 -> 16 kHz, turned into 128-bin Kaldi fbanks (25 ms / 10 ms), normalised
with the training set's mean/std, and padded / cropped to 100 frames (1 s; 99% of the
clips are shorter; longer training clips are cropped at a random offset, test clips centred). Training adds SpecAugment and mixup. The recorded baseline of
every recipe is a logistic regression on the per-bin mean and std of the same fbanks (same
split), a classical floor the neural models must clear.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from mambakit.train.config import OptimConfig, TrainConfig
from mambakit.train.recipes import RecipeParts, register_recipe

from .data import FSDD, FeatureDataset, compute_features, fit_feature_stats
from .frontend import FbankConfig, SpecAugment
from .models import AudioModelConfig, build_model

MAX_FRAMES = 100


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class ids ``(B,)`` or soft (mixup) targets ``(B, C)``."""
    if targets.dim() == 2:
        return torch.sum(-targets * F.log_softmax(logits.float(), -1), -1).mean()
    return F.cross_entropy(logits.float(), targets)


@lru_cache(maxsize=12)
def fsdd_features(root: str, protocol: str, split: str, kind: str = "kaldi", cache_dir: str = ""
                  ) -> tuple[list, list, list]:
    """``(features (T_i, 128) un-normalised, digits, speakers)`` of one FSDD split.

    Cached in memory, and in ``cache_dir`` (a ``.pt`` file per split, keyed by the file list)
    when given, so that successive recipe runs skip the feature extraction."""
    ds = FSDD(root or None, split=split, protocol=protocol)
    labels, speakers = [d for _, d in ds.samples], list(ds.speakers)
    names = [p.name for p, _ in ds.samples]
    path = None
    if cache_dir:
        from pathlib import Path
        tag = protocol.replace(":", "-")
        path = Path(cache_dir) / f"fsdd_{tag}_{split}_{kind}.pt"
        if path.is_file():
            cached = torch.load(path, weights_only=True)
            if cached.get("names") == names:
                return list(cached["features"]), labels, speakers
    feats = compute_features(ds, FbankConfig(kind=kind))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"names": names, "features": feats}, path)
    return feats, labels, speakers


def _pooled_stats(features: list) -> np.ndarray:
    return np.stack([torch.cat([f.mean(0), f.std(0)]).numpy() for f in features])


def _config(name: str, arch: str, model: dict, steps: int, lr: float, batch: int = 32) -> TrainConfig:
    return TrainConfig(
        output_dir=f"runs/{name}", seed=0, max_steps=steps, batch_size=batch, eval_batch_size=125,
        eval_every=steps, log_every=10, keep_last=1, metric_for_best="accuracy", quiet=True,
        optim=OptimConfig(lr=lr, weight_decay=0.05, warmup_steps=max(1, steps // 12), min_lr_ratio=0.02,
                          grad_clip=1.0),
        model={"arch": arch, **model},
        data={"root": "", "protocol": "standard", "frontend": "kaldi", "spec_freq": 16, "spec_time": 16,
              "mixup": 0.0, "random_crop": True, "feature_cache": "runs/cache"})


def build(config: TrainConfig) -> RecipeParts:
    data, opts = dict(config.data), dict(config.model)
    root, protocol, kind = data.get("root", ""), data.get("protocol", "standard"), data.get("frontend", "kaldi")
    cache = str(data.get("feature_cache", ""))
    tr_feats, tr_y, _ = fsdd_features(root, protocol, "train", kind, cache)
    te_feats, te_y, te_spk = fsdd_features(root, protocol, "test", kind, cache)
    fb = fit_feature_stats(tr_feats, FbankConfig(kind=kind))
    arch = opts.pop("arch")
    mcfg = AudioModelConfig(arch=arch, num_classes=10, max_frames=MAX_FRAMES, frontend=fb.to_dict(), **opts)
    torch.manual_seed(config.seed)
    model = build_model(mcfg)
    augment = SpecAugment(freq_width=int(data.get("spec_freq", 24)), time_width=int(data.get("spec_time", 24)))
    train = FeatureDataset(tr_feats, tr_y, fb, MAX_FRAMES, 10, augment=augment,
                           mixup=float(data.get("mixup", 0.0)), random_crop=bool(data.get("random_crop", True)))
    test = FeatureDataset(te_feats, te_y, fb, MAX_FRAMES, 10)

    def baseline() -> dict:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        clf.fit(_pooled_stats(tr_feats), tr_y)
        pred = clf.predict(_pooled_stats(te_feats))
        acc = float(np.mean(pred == np.asarray(te_y)))
        return {"name": "logistic regression on per-bin mean+std of the same 128-bin fbanks (scikit-learn)",
                "metrics": {"accuracy": acc}}

    if protocol == "standard":
        split = ("FSDD standard split: index 0-4 of every speaker/digit is test (250 clips), index 5-49 train "
                 "(2,250 clips); 5 speakers in both")
    else:
        split = (f"FSDD leave-one-speaker-out: speaker {protocol.split(':', 1)[1]} is test (500 clips), "
                 f"the other 4 speakers train (2,000 clips)")
    return RecipeParts(model=model, train_data=train, eval_data=test, loss_fn=classification_loss,
                       metrics=["accuracy", "balanced_accuracy", "f1"], config=config, baseline=baseline,
                       dataset_name="audio/fsdd", split=split, extra={"test_speakers": te_spk})


SMALL = {"d_model": 64, "n_layer": 2, "d_state": 16, "expand": 2}

register_recipe("audio", "fsdd-audio-mamba", 1, build,
                config=lambda: _config("fsdd-audio-mamba", "audio_mamba",
                                       {**SMALL, "cls_position": "middle", "pooling": "mean"}, 200, 4e-3, batch=16),
                description="bidirectional patch Mamba (AuM-like, 16x16 fbank patches, d 64, 2 layers) on FSDD")
register_recipe("audio", "fsdd-frame-mamba", 1, build,
                config=lambda: _config("fsdd-frame-mamba", "frame_mamba", {**SMALL, "pooling": "mean"}, 300, 5e-3),
                description="causal frame Mamba (one token per 10 ms frame, d 64, 2 layers, streams) on FSDD")
register_recipe("audio", "fsdd-ast", 1, build,
                config=lambda: _config("fsdd-ast", "patch_transformer",
                                       {"d_model": 64, "n_layer": 2, "num_heads": 4, "cls_position": "head",
                                        "pooling": "mean"}, 400, 2e-3),
                description="AST-style baseline: timm ViT blocks on the same 16x16 fbank patches (d 64, 2 layers)")


def export_checkpoint(name: str, run_dir: str = "", out_dir: str = "", overrides: Optional[list] = None) -> str:
    """Save the best weights of a finished recipe run as a self-contained model folder
    (``config.json`` with the frontend statistics + ``model.safetensors``); returns its path.

    ``python -c "from mambakit.audio.recipes import export_checkpoint as e; e('fsdd-frame-mamba')"``
    writes ``audio/checkpoints/fsdd-frame-mamba``.
    """
    from pathlib import Path

    from mambakit.train import checkpoint as ckpt
    from mambakit.train.config import apply_overrides
    from mambakit.train.recipes import find_recipe

    recipe = find_recipe("audio", name)
    config = apply_overrides(recipe.config(), overrides or [])
    parts = recipe.build(config)
    root = Path(run_dir or config.output_dir) / "checkpoints"
    folder = root / ckpt.BEST if (root / ckpt.BEST / ckpt.WEIGHTS).is_file() else ckpt.latest_checkpoint(root)
    if folder is None:
        raise FileNotFoundError(f"no checkpoint in {root}: train the recipe first")
    ckpt.load_weights(folder, parts.model)
    out = Path(out_dir) if out_dir else Path(__file__).resolve().parent / "checkpoints" / name
    return str(parts.model.eval().save_pretrained(out))

