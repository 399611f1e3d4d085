"""Write ``card.json`` next to every shipped checkpoint from its recipe's record.

    python -m mambakit.apps.make_cards            # (re)write the cards
    python -m mambakit.apps.make_cards --check    # exit 1 if a card is missing or out of date

The records (``benchmarks/results/recipes/<name>.json``) live in the repository, not in the
wheel, so the facts a model card needs (data set, split, test metrics, baseline, machine,
date, commit, command) are copied next to the checkpoint, which ships. Run it from a checkout
after a recipe is re-recorded or a checkpoint re-exported. The time-series card also stores
the ETTh1 training-split scaler (needs the data under ``shared/data``), which the demo applies
to uploaded CSVs with the ETTh1 columns.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "benchmarks" / "results" / "recipes"

# checkpoint name -> (domain folder, metrics shown first on the card)
CARDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fashion-mnist-vim-micro": ("vision", ("accuracy",)),
    "fsdd-frame-mamba": ("audio", ("accuracy", "f1")),
    "fsdd-audio-mamba-h100": ("audio", ("accuracy", "f1")),
    "klebsiella-caduceus-mlm-h100": ("genomics", ("bits_per_base", "perplexity")),
    "klebsiella-coding-h100": ("genomics", ("accuracy", "mcc", "roc_auc")),
    "klebsiella-strand-h100": ("genomics", ("accuracy", "mcc", "roc_auc")),
    "klebsiella-coding-tiny": ("genomics", ("accuracy", "mcc", "roc_auc")),
    "klebsiella-strand-tiny": ("genomics", ("accuracy", "mcc", "roc_auc")),
    "etth1-smamba-h96": ("timeseries", ("mse", "mae", "mae_original")),
    "pattern-graph-mamba-tiny": ("graphs", ("balanced_accuracy", "accuracy")),
}


def checkpoint_dir(name: str, repo: Path = REPO) -> Path:
    return repo / CARDS[name][0] / "checkpoints" / name


def _machine(m: dict) -> str:
    gpu = m.get("gpu")
    where = f"GPU {gpu}" if gpu else f"CPU ({m.get('processor') or 'x86_64'}, {m.get('cpu_count', '?')} cores)"
    return f"{where}, torch {m.get('torch', '?')}"


def _etth1_scaler() -> Optional[dict[str, Any]]:
    from mambakit.data import dataset_path
    from mambakit.timeseries.data import ForecastDataset

    try:
        root = dataset_path("timeseries", "ETT-small")
    except FileNotFoundError:
        return None
    train = ForecastDataset(root, "ETTh1", "train", seq_len=96, pred_len=96)
    return {"columns": list(train.columns), "mean": [float(v) for v in train.scaler.mean],
            "std": [float(v) for v in train.scaler.std],
            "fitted_on": "ETTh1 training split (rows 0-8640), as the recipe's ForecastDataset"}


def build_card(name: str, records: Path = RECORDS) -> dict[str, Any]:
    """The card dict for checkpoint ``name`` from its record. Raises ``FileNotFoundError``."""
    path = records / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no record {path}")
    rec = json.loads(path.read_text())
    base = rec.get("baseline") or {}
    card: dict[str, Any] = {
        "name": name, "recipe": rec.get("recipe"), "description": rec.get("description"),
        "dataset": rec.get("dataset"), "split": rec.get("split"),
        # records of recipes with a validation split keep the test split's numbers in test_metrics
        "metrics": rec.get("test_metrics") or rec.get("metrics", {}),
        "headline_metrics": list(CARDS[name][1]),
        "baseline": {"name": base.get("name"), "metrics": base.get("metrics", {})} if base else None,
        "parameters": (rec.get("model") or {}).get("parameters"),
        "machine": _machine(rec.get("machine", {})), "date": rec.get("date"),
        "git_commit": (rec.get("git") or {}).get("commit"), "command": rec.get("command"),
        "source_record": f"benchmarks/results/recipes/{name}.json",
    }
    if name == "etth1-smamba-h96":
        scaler = _etth1_scaler()
        if scaler is None:   # no data here: keep the scaler the shipped card already carries
            existing = checkpoint_dir(name) / "card.json"
            scaler = json.loads(existing.read_text()).get("input_scaler") if existing.is_file() else None
        if scaler is None:
            raise FileNotFoundError("ETTh1 data not found (needed for the card's input scaler)")
        card["input_scaler"] = scaler
    return card


def _dump(card: dict) -> str:
    return json.dumps(card, indent=2, sort_keys=True) + "\n"


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".card-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)                       # mkstemp makes 0600; package data must be readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mambakit.apps.make_cards", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that every card is up to date")
    parser.add_argument("names", nargs="*", help=f"checkpoints (default: all of {sorted(CARDS)})")
    args = parser.parse_args(argv)
    status = 0
    for name in args.names or sorted(CARDS):
        if name not in CARDS:
            print(f"unknown checkpoint {name!r}; known: {sorted(CARDS)}", file=sys.stderr)
            return 2
        folder = checkpoint_dir(name)
        if not (folder / "model.safetensors").is_file():
            print(f"skip {name}: no checkpoint at {folder}")
            continue
        try:
            text = _dump(build_card(name))
        except FileNotFoundError as err:
            print(f"skip {name}: {err}", file=sys.stderr)
            status = 1
            continue
        target = folder / "card.json"
        if args.check:
            if not target.is_file() or target.read_text() != text:
                print(f"out of date: {target}")
                status = 1
            continue
        write_atomic(target, text)
        print(f"wrote {target}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
