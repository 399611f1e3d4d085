"""Model cards: what a shipped model was trained on, how well it did, how big and how fast it is.

The facts come from three places:

- ``card.json`` next to the checkpoint (written by ``make_cards`` from the recipe's record
  under ``benchmarks/results/recipes/``): data set, split, test metrics, baseline, the
  machine and date of the run, the command that reproduces it;
- the checkpoint itself: ``config.json``, the weights file size, the parameter count;
- this machine: the latency of one forward pass, measured once at first use.
"""
from __future__ import annotations

import logging
import os
import platform
from typing import Any, Callable, Iterable, Optional

import torch

from .limits import human_size
from .models import ShippedModel

# How each metric reads on the card; fractions are shown as percentages.
METRIC_NAMES = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "f1": "F1 (macro)", "mcc": "MCC",
    "roc_auc": "ROC AUC", "mse": "MSE (standardised)", "mae": "MAE (standardised)",
    "mse_original": "MSE (data units)", "mae_original": "MAE (data units)",
}
PERCENT = {"accuracy", "balanced_accuracy"}
log = logging.getLogger("mambakit.apps")


def format_metric(name: str, value: float) -> str:
    """``("accuracy", 0.98)`` -> ``"accuracy 98.0%"``; other metrics with 3 decimals."""
    label = METRIC_NAMES.get(name, name.replace("_", " "))
    if name in PERCENT:
        return f"{label} {100 * value:.1f}%"
    return f"{label} {value:.3f}"


def machine_summary() -> str:
    """This machine in a few words: CPU, cores, torch threads."""
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"


def card_rows(model: ShippedModel, measure: bool = True) -> dict[str, str]:
    """The card as ordered ``{field: text}`` rows. ``measure=False`` skips loading the model
    (no parameter count, no latency)."""
    facts = model.card_facts()
    rows: dict[str, str] = {}
    if not model.available():
        return {"status": f"not installed (no checkpoint at {model.directory})"}
    rows["model"] = facts.get("description", model.key)
    if facts:
        rows["trained on"] = f"{facts.get('dataset', '?')}: {facts.get('split', '')}".strip()
        headline = facts.get("headline_metrics") or list(facts.get("metrics", {}))
        metrics = facts.get("metrics", {})
        shown = [format_metric(k, metrics[k]) for k in headline if k in metrics]
        rows["test metric"] = ", ".join(shown) if shown else "not recorded"
        base = facts.get("baseline") or {}
        if base.get("name") and base.get("metrics"):
            b = [format_metric(k, base["metrics"][k]) for k in headline if k in base["metrics"]]
            if b:
                rows["baseline"] = f"{base['name']}: {', '.join(b)}"
        rows["recorded"] = (f"{facts.get('date', '?')[:10]} on {facts.get('machine', '?')}, commit "
                            f"{str(facts.get('git_commit', '?'))[:10]}: `{facts.get('command', '')}`")
    else:
        rows["test metric"] = "no card.json next to the checkpoint (run python -m mambakit.apps.make_cards)"
    size = human_size(model.file_bytes())
    if measure:
        rows["size"] = f"{model.parameters():,} parameters, {size} on disk"
        rows["latency"] = (f"{model.latency_ms():.1f} ms for {model.latency_input} "
                           f"(median of 7, CPU, this machine: {machine_summary()})")
    else:
        params = facts.get("parameters")
        rows["size"] = (f"{params:,} parameters, " if params else "") + f"{size} on disk"
        rows["latency"] = "measured on first use"
    return rows


def card_markdown(models: Iterable[ShippedModel], measure: bool = True, title: Optional[str] = None) -> str:
    """Markdown for the cards of ``models`` (one section each)."""
    parts = [f"### {title}"] if title else []
    for m in models:
        rows = card_rows(m, measure)
        parts.append(f"**Model card: `{m.key}`**\n")
        parts.extend(f"- **{k}**: {v}" for k, v in rows.items())
        parts.append("")
    return "\n".join(parts)


def card_updater(models: Iterable[ShippedModel]) -> Callable[[], str]:
    """The page-load handler of a tab's card: the full card (loads the models, measures their
    latency once), or the facts that need no model plus the reason when one cannot be loaded."""
    models = list(models)

    def update() -> str:
        try:
            return card_markdown(models)
        except Exception as err:  # noqa: BLE001 - a broken checkpoint must not break the page
            log.error("model card of %s", [m.key for m in models], exc_info=err)
            return card_markdown(models, measure=False) + f"\n\n*The model could not be loaded: {err}*"
    return update


def card_dict(model: ShippedModel) -> dict[str, Any]:
    """Machine-readable card (for tests and the API): the rows plus the raw numbers."""
    facts = model.card_facts()
    return {"key": model.key, "rows": card_rows(model), "parameters": model.parameters(),
            "file_bytes": model.file_bytes(), "latency_ms": model.latency_ms(),
            "metrics": facts.get("metrics", {}), "dataset": facts.get("dataset")}
