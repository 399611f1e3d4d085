"""The app's tabs, one module per domain, listed in ``TABS`` (the order of the tabs on the page).

A tab module ``mambakit.apps.tabs.<name>`` provides:

- ``NAME``: short id (``"audio"``), also the ``gr.Tab`` id; ``TITLE``: the tab's label;
- ``MODELS``: the ``ShippedModel`` s it uses (their cards are shown in the tab);
- predict functions on plain Python values (a file path, text, a number) that return plain
  results and raise ``ValueError`` / ``TypeError`` with a readable message for bad input;
  these are what the tests call directly;
- ``ui_*`` handlers, the predict functions wrapped with ``limits.ui_errors`` and turned into
  Gradio outputs (label dicts, figures, Markdown);
- ``build()``: creates the tab's components inside an open ``gr.Tab`` and wires the handlers
  (``api_name`` for each, so ``gradio_client`` can call them), plus its model card.

Adding a domain = writing such a module and adding its name to ``TABS``.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Sequence

TABS: tuple[str, ...] = ("vision", "audio", "genomics", "timeseries", "graphs")


def tab_modules(names: Sequence[str] = TABS) -> list[ModuleType]:
    """Import the tab modules ``names`` (``ValueError`` for an unknown one)."""
    out = []
    for name in names:
        if name not in TABS:
            raise ValueError(f"unknown tab {name!r}; expected some of {list(TABS)}")
        out.append(importlib.import_module(f"{__name__}.{name}"))
    return out
