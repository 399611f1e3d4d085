"""Upload limits and readable errors: what the user sees when the input is wrong.

The domain packages raise ``ValueError`` / ``TypeError`` whose messages already say what was
expected and what came. ``ui_errors`` turns those (and ``FileNotFoundError``) into a
``gradio.Error`` with the same message, so the page shows one readable sentence. Anything
else is a bug: it is logged with its traceback on the server and the page gets a short,
generic message with a reference number to find the log entry, never the traceback.

Upload paths are temporary files chosen by the server (``/tmp/gradio/<hash>/clip.wav``); the
user knows only the file name, so messages show that instead of the full path.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

log = logging.getLogger("mambakit.apps")

MB = 1024 * 1024
# Per-kind upload limits (bytes). They sit below the server-wide cap (``SERVER_MAX_FILE_SIZE``)
# so that a too-large file of a known kind gets our message, which names the limit.
MAX_UPLOAD_BYTES = {"image": 5 * MB, "audio": 10 * MB, "dna": 2 * MB, "csv": 5 * MB, "graph": 5 * MB}
SERVER_MAX_FILE_SIZE = 25 * MB
FILE_SUFFIXES = {
    "image": (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    "audio": (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".webm", ".aac", ".aiff", ".aif"),
    "dna": (".fa", ".fasta", ".fna", ".ffn", ".fas", ".txt", ".seq"),
    "csv": (".csv", ".txt", ".tsv"),
    "graph": (".json", ".txt", ".csv", ".edgelist", ".edges"),
}
MAX_AUDIO_SECONDS = 30.0
MAX_DNA_BASES = 2000
MIN_DNA_BASES = 10
MAX_CSV_ROWS = 200_000
MAX_IMAGE_PIXELS = 40_000_000     # decoded size; a small PNG can still decode to a huge bitmap

F = TypeVar("F", bound=Callable[..., Any])


class InputError(ValueError):
    """Bad user input detected by the app itself (a ``ValueError``, so callers treat it alike)."""


def human_size(n: int) -> str:
    """``5242880`` -> ``'5 MB'``; ``1536`` -> ``'1.5 KB'``."""
    for unit, size in (("GB", 1024 ** 3), ("MB", MB), ("KB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def check_upload(path: Optional[str | os.PathLike], kind: str, what: str = "file") -> Path:
    """Validate an uploaded file of ``kind`` (``image``, ``audio``, ``dna``, ``csv``).

    Returns the path; raises ``InputError`` for a missing/empty/too-large file or a suffix that
    is not one of ``FILE_SUFFIXES[kind]``.
    """
    if kind not in MAX_UPLOAD_BYTES:
        raise ValueError(f"kind: expected one of {sorted(MAX_UPLOAD_BYTES)}, got {kind!r}")
    if path is None or str(path) == "":
        raise InputError(f"no {what} given: upload one or pick an example")
    p = Path(path)
    if not p.is_file():
        raise InputError(f"the uploaded {what} '{p.name}' could not be found on the server; upload it again")
    suffixes = FILE_SUFFIXES[kind]
    if p.suffix.lower() not in suffixes:
        raise InputError(f"'{p.name}' is not a supported {what} type ({p.suffix or 'no extension'}); "
                         f"expected one of: {', '.join(suffixes)}")
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"'{p.name}' is empty (0 bytes)")
    limit = MAX_UPLOAD_BYTES[kind]
    if size > limit:
        raise InputError(f"'{p.name}' is {human_size(size)}: too large, {what}s are limited to {human_size(limit)} here")
    return p


def _scrub(message: str, paths: Iterable[str]) -> str:
    for p in sorted(set(paths), key=len, reverse=True):
        if p and len(p) > 1:
            message = message.replace(p, Path(p).name)
    return message


def user_message(err: BaseException, paths: Iterable[str] = ()) -> str:
    """The one-line message for an expected error (``ValueError``/``TypeError``/``FileNotFoundError``),
    with server-side upload paths reduced to file names."""
    text = str(err).strip() or type(err).__name__
    if isinstance(err, KeyError):
        text = text.strip("'\"")
    return _scrub(text, paths)


def _path_args(args: tuple, kwargs: dict) -> list[str]:
    out = []
    for v in (*args, *kwargs.values()):
        if isinstance(v, (str, os.PathLike)) and os.sep in str(v) and len(str(v)) < 4096:
            out.append(str(v))
            out.append(str(Path(v).parent))
    return out


def _to_gradio_error(err: BaseException, args: tuple, kwargs: dict, fn_name: str) -> Exception:
    import gradio as gr

    if isinstance(err, gr.Error):
        return err
    if isinstance(err, (ValueError, TypeError, FileNotFoundError)):
        return gr.Error(user_message(err, _path_args(args, kwargs)), title="Cannot use this input",
                        print_exception=False)
    ref = secrets.token_hex(3)
    log.error("unexpected error in %s (ref %s)", fn_name, ref, exc_info=err)
    return gr.Error(f"Something went wrong inside the demo (reference {ref}); the details are in the "
                    "server log. Try another input.", title="Internal error", print_exception=False)


def ui_errors(fn: F) -> F:
    """Decorate a Gradio event handler: expected errors become readable ``gradio.Error``s, any
    other exception a generic message (logged with its traceback). Works for plain functions
    and generators (streaming handlers)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - the point is to catch everything
                raise _to_gradio_error(err, args, kwargs, fn.__qualname__) from None
        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise _to_gradio_error(err, args, kwargs, fn.__qualname__) from None
    return wrapper  # type: ignore[return-value]
