"""Regenerate docs/benchmarks.md from the JSON results: the same as ``mambakit tables``.

    python benchmarks/tables.py            # write docs/benchmarks.md
    python benchmarks/tables.py --check    # stale doc or a number without a source -> exit 1
    python benchmarks/tables.py --run      # re-run what this machine can run, then regenerate

The generator lives in the package (``mambakit.tables``) so that the installed command works
too; this wrapper runs it from the checkout with the checkout's results as the default.
The published anchors shown beside our numbers are in ``benchmarks/anchors.json``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mambakit.tables import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--results" or a.startswith("--results=") for a in argv):
        argv = ["--results", str(RESULTS), *argv]      # this checkout's results, from any directory
    sys.exit(main(argv))
