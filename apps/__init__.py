"""Gradio demos, one tab per domain, on small checkpoints that ship with the package.

- ``main(argv)``: what ``mambakit demo [args]`` runs (``--host``, ``--port``, ``--no-browser``,
  ``--threads``, ``--tabs``); serves the app until Ctrl-C.
- ``build_app()``: the ``gradio.Blocks`` app, not launched (for tests and embedding).
- ``tabs``: one module per domain (vision, audio, genomics, time series), each with plain
  predict functions, Gradio handlers and its ``build()``; ``cards``: model cards;
  ``limits``: upload limits and readable errors; ``models``: lazily loaded shipped checkpoints.

Gradio is an optional dependency (``pip install mambakit[apps]``); importing this package
does not import it.
"""
from __future__ import annotations

import importlib.util
import sys
from typing import Optional, Sequence


def _gradio_missing() -> Optional[str]:
    if importlib.util.find_spec("gradio") is None:
        return "the demo needs Gradio: pip install 'mambakit[apps]'"
    return None


def build_app(*args, **kwargs):
    """The app as a ``gradio.Blocks`` (see ``mambakit.apps.app.build_app``)."""
    problem = _gradio_missing()
    if problem:
        raise ImportError(problem)
    from .app import build_app as _build

    return _build(*args, **kwargs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``mambakit demo``; returns the exit status."""
    problem = _gradio_missing()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from .app import main as _main

    return _main(argv)


__all__ = ["build_app", "main"]
