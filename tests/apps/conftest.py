"""Fixtures of the app tests: the vision checkpoint, a served app, a gradio_client.

Until the Fashion-MNIST checkpoint ships (``vision/checkpoints/fashion-mnist-vim-micro``), the
vision tab is tested against a randomly initialised Vim of the same shape, written to a
temporary folder: enough for the plumbing, and tests about accuracy skip.
"""
from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio")

# Gradio's upload/cache folder and telemetry switch are read when gradio is imported.
_CACHE = tempfile.mkdtemp(prefix="mambakit-apps-tests-")
os.environ.setdefault("GRADIO_TEMP_DIR", _CACHE)
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

EXAMPLES = Path(__file__).resolve().parents[2] / "apps" / "examples"


def pytest_collection_modifyitems(config, items):
    # Gradio's queue calls pandas APIs that pandas 3 deprecates: not ours to fix, not worth the noise.
    for item in items:
        if "tests/apps/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"))


@pytest.fixture(scope="session", autouse=True)
def vision_checkpoint(tmp_path_factory):
    """The shipped vision checkpoint, or a random stand-in until it exists."""
    from mambakit.apps.tabs import vision

    if vision.MODEL.available():
        yield True
        return
    from mambakit.vision.vim import Vim, VimConfig

    folder = tmp_path_factory.mktemp("vim-random")
    Vim(VimConfig(img_size=28, in_chans=1, num_classes=10, embed_dim=32, depth=2, patch_size=4,
                  stride=4)).save_pretrained(folder)
    original = vision.MODEL.directory
    vision.MODEL.directory = folder
    yield False
    vision.MODEL.directory = original
    vision.MODEL._model = vision.MODEL._latency = None


@pytest.fixture(scope="session")
def shipped_vision(vision_checkpoint) -> bool:
    return vision_checkpoint


@pytest.fixture(scope="session")
def server(vision_checkpoint):
    """The whole app served on 127.0.0.1 (random free port) in a background thread."""
    from mambakit.apps.app import build_app, launch

    demo = build_app()
    url = launch(demo, "127.0.0.1", 0, open_browser=False, block=False)
    yield url
    demo.close()


@pytest.fixture(scope="session")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write float samples ``(N,)`` or ``(N, C)`` in [-1, 1] as 16-bit PCM WAV."""
    x = np.asarray(samples, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def _sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (for the upload-size limits)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@pytest.fixture
def write_wav():
    return _write_wav


@pytest.fixture
def sparse_file():
    return _sparse_file
