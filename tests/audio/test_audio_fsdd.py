"""FSDD on disk (skips cleanly where ../shared/data/audio/fsdd is absent), recipes, shipped checkpoint."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from mambakit.audio.data import FSDD, FSDD_SPEAKERS


def fsdd_root() -> Path:
    try:
        from mambakit.data.paths import dataset_path
        root = dataset_path("audio", "fsdd")
    except FileNotFoundError as err:
        pytest.skip(f"shared data not found: {err}")
    if not (root / "recordings").is_dir():
        pytest.skip(f"FSDD not found at {root}/recordings")
    return root


def test_fsdd_standard_split():
    root = fsdd_root()
    train, test = FSDD(root, "train"), FSDD(root, "test")
    assert len(train) == 2250 and len(test) == 250
    assert Counter(test.speakers) == {s: 50 for s in FSDD_SPEAKERS}
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    wav, rate, digit = test[0]
    assert rate == 8000 and wav.dim() == 2 and wav.shape[0] == 1 and 0 <= digit <= 9
    assert wav.abs().max() <= 1.0 and wav.abs().max() > 0.01


@pytest.mark.parametrize("speaker", ["theo"])
def test_fsdd_leave_one_speaker_out(speaker):
    root = fsdd_root()
    train = FSDD(root, "train", protocol=f"speaker:{speaker}")
    test = FSDD(root, "test", protocol=f"speaker:{speaker}")
    assert len(test) == 500 and set(test.speakers) == {speaker}
    assert len(train) == 2000 and speaker not in set(train.speakers)


def test_fsdd_bad_arguments(tmp_path):
    root = fsdd_root()
    with pytest.raises(ValueError, match="unknown FSDD speaker"):
        FSDD(root, "test", protocol="speaker:nobody")
    with pytest.raises(ValueError, match="protocol"):
        FSDD(root, "test", protocol="random")
    with pytest.raises(ValueError, match="split"):
        FSDD(root, "valid")
    with pytest.raises(FileNotFoundError, match="recordings"):
        FSDD(tmp_path, "train")


def test_recipes_registered():
    from mambakit.train.recipes import find_recipe

    for name in ("fsdd-audio-mamba", "fsdd-frame-mamba", "fsdd-ast"):
        recipe = find_recipe("audio", name)
        assert recipe.config().model["arch"] in ("audio_mamba", "frame_mamba", "patch_transformer")


CHECKPOINT = Path(__file__).resolve().parents[2] / "audio" / "checkpoints" / "fsdd-frame-mamba"


def test_shipped_checkpoint_streams_real_digits():
    """The demo checkpoint recognises held-out FSDD clips, streamed in 100 ms chunks."""
    root = fsdd_root()
    if not (CHECKPOINT / "config.json").is_file():
        pytest.skip(f"no shipped checkpoint at {CHECKPOINT}")
    from mambakit.audio.models import load_model
    from mambakit.audio.frontend import prepare_waveform
    from mambakit.audio.streaming import StreamingClassifier

    model = load_model(CHECKPOINT)
    test = FSDD(root, "test")
    stream = StreamingClassifier(model)
    correct, n = 0, 0
    for i in range(0, len(test), 50):  # 5 clips: one per speaker, digits 0, 2, 4, 6, 8
        wav, rate, digit = test[i]
        x = prepare_waveform(wav, rate, stream.sample_rate)
        stream.reset()
        probs = stream.run(x, chunk_ms=100.0)[-1]
        offline = model.classify(wav, rate)
        torch.testing.assert_close(probs, offline, rtol=1e-4, atol=1e-5)
        correct += int(probs.argmax()) == digit
        n += 1
    assert correct >= 4, f"{correct}/{n} held-out clips right"
