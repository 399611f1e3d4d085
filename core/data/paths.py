"""Where the real datasets live: ``$MAMBAKIT_DATA``, else ``shared/data`` beside the checkout.

The repository is checked out next to a ``shared/data`` folder (``<repo>/../shared/data``); the
search walks up from this package's folder (editable installs) and from the working directory
(regular installs run from the checkout), so both find it without configuration.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "MAMBAKIT_DATA"


def _candidates() -> list[Path]:
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    seen: list[Path] = []
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "shared" / "data"
            if candidate not in seen:
                seen.append(candidate)
    return seen


def data_root() -> Path:
    """The folder that holds ``<domain>/<dataset>/`` data sets.

    ``$MAMBAKIT_DATA`` wins when set (and must be an existing folder); otherwise the first
    ``shared/data`` found walking up from the package and from the working directory.
    Raises ``FileNotFoundError`` naming the places it looked.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={env!r} is not a folder")
        return root
    candidates = _candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(c) for c in candidates[:4])
    raise FileNotFoundError(f"no data folder found: set {ENV_VAR} to the folder that holds "
                            f"<domain>/<dataset>/ (looked for shared/data at {looked}, ...)")


def dataset_path(*parts: str) -> Path:
    """``data_root() / parts``, e.g. ``dataset_path("genomics", "klebsiella")``.

    Raises ``FileNotFoundError`` naming the full path when it does not exist.
    """
    if not parts or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"dataset_path: expected non-empty path parts, got {parts!r}")
    path = data_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"dataset not found: {path} (data root from ${ENV_VAR} or "
                                f"shared/data beside the checkout)")
    return path
