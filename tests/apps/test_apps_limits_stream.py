"""Readable errors and upload limits; chunked resampling and live keyword spotting."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio

from mambakit.apps.audio_stream import LiveKeywordSpotter, StreamingResampler, to_mono
from mambakit.apps.limits import InputError, check_upload, human_size, ui_errors, user_message

EXAMPLES = Path(__file__).resolve().parents[2] / "apps" / "examples"


# ---- limits and messages -------------------------------------------------------------------------
def test_human_size():
    assert human_size(5 * 1024 * 1024) == "5 MB"
    assert human_size(1536) == "1.5 KB"
    assert human_size(12) == "12 bytes"
    assert human_size(int(2.5 * 1024 ** 3)) == "2.5 GB"


def test_check_upload(tmp_path):
    ok = tmp_path / "a.WAV"
    ok.write_bytes(b"x")
    assert check_upload(str(ok), "audio") == ok                    # suffixes are case-insensitive
    with pytest.raises(InputError, match="could not be found"):
        check_upload(str(tmp_path / "gone.wav"), "audio")
    with pytest.raises(InputError, match="no file given"):
        check_upload("", "audio")
    with pytest.raises(ValueError, match="kind"):
        check_upload(str(ok), "video")


def test_ui_errors_turns_value_errors_into_readable_gradio_errors(tmp_path):
    import gradio as gr

    upload = tmp_path / "abc123" / "clip.wav"

    @ui_errors
    def bad(path):
        raise ValueError(f"cannot read WAV file {path}: not a WAVE file")

    with pytest.raises(gr.Error) as info:
        bad(str(upload))
    assert info.value.message == "cannot read WAV file clip.wav: not a WAVE file"
    assert str(tmp_path) not in info.value.message


def test_ui_errors_hides_unexpected_exceptions(caplog):
    import gradio as gr

    @ui_errors
    def broken(x):
        return {}["missing key"]

    with caplog.at_level(logging.ERROR, logger="mambakit.apps"):
        with pytest.raises(gr.Error) as info:
            broken(1)
    message = info.value.message
    assert message.startswith("Something went wrong inside the demo (reference ")
    assert "Traceback" not in message and "missing key" not in message and "KeyError" not in message
    ref = message.split("reference ")[1][:6]
    assert any(ref in r.getMessage() and r.exc_info for r in caplog.records)   # the log has the details


def test_ui_errors_wraps_generators():
    import gradio as gr

    @ui_errors
    def stream():
        yield 1
        raise TypeError("chunk: expected samples")

    gen = stream()
    assert next(gen) == 1
    with pytest.raises(gr.Error, match="chunk: expected samples"):
        next(gen)


def test_user_message_keeps_file_names_only():
    err = FileNotFoundError("no such file: /tmp/gradio/9f/x.csv")
    assert user_message(err, ["/tmp/gradio/9f/x.csv"]) == "no such file: x.csv"


# ---- streaming ------------------------------------------------------------------------------------
@pytest.mark.parametrize("orig,new", [(48000, 16000), (44100, 16000), (8000, 16000), (22050, 16000), (16000, 16000)])
def test_streaming_resampler_equals_offline(orig, new, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(orig + int(torch.randint(0, 5000, (1,), generator=g)), generator=g)
    ref = torchaudio.functional.resample(x, orig, new)
    r = StreamingResampler(orig, new)
    outs, i, held = [], 0, []
    while i < len(x):
        n = int(torch.randint(1, 4000, (1,), generator=g))
        outs.append(r.push(x[i:i + n]))
        held.append(r.state_samples())
        i += n
    outs.append(r.flush())
    y = torch.cat(outs)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, atol=2e-4, rtol=0)
    # memory between chunks: kernel width + one block + at most one chunk, never the whole stream
    assert max(held) < 2 * r.width + 2 * getattr(r, "o", 1) + 4000 if orig != new else max(held) == 0


def test_streaming_resampler_rejects_bad_input():
    with pytest.raises(ValueError, match="orig_freq"):
        StreamingResampler(0, 16000)
    with pytest.raises(ValueError, match="mono"):
        StreamingResampler(48000, 16000).push(torch.zeros(2, 10))


def test_to_mono_formats():
    pcm = np.array([[32767, -32768], [0, 0]], dtype=np.int16)            # (N=2, C=2)
    torch.testing.assert_close(to_mono(pcm), torch.tensor([-0.5 / 32768, 0.0]), atol=1e-6, rtol=0)
    assert to_mono(np.ones(5, dtype=np.float32)).shape == (5,)
    with pytest.raises(TypeError, match="integer PCM or float"):
        to_mono(np.array(["a"]))
    with pytest.raises(ValueError, match="NaN"):
        to_mono(np.array([np.nan], dtype=np.float32))


def test_live_spotter_matches_the_offline_running_prediction():
    """A 48 kHz microphone stream in 100 ms chunks ends on the prediction of the same audio
    resampled at once, and the state stays the same size."""
    from mambakit.apps.tabs import audio
    from mambakit.audio.data import read_audio

    wav, rate = read_audio(EXAMPLES / "audio" / "5_nicolas_3.wav")
    mic = torchaudio.functional.resample(wav[0], rate, 48000)
    pcm = (mic.clamp(-1, 1) * 32767).round().to(torch.int16).numpy()
    live = LiveKeywordSpotter(audio.MODEL.model())
    sizes = set()
    for start in range(0, len(pcm), 4800):
        p = live.feed(48000, pcm[start:start + 4800])
        if start >= 9600:
            sizes.add(live.classifier.cache.state_bytes())
    assert len(sizes) == 1                                           # constant recurrent state
    x16 = torchaudio.functional.resample(torch.from_numpy(pcm).float() / 32768, 48000, 16000)
    model = audio.MODEL.model()
    n_frames = 1 + (len(x16) - 400) // 160
    # all but the last few samples (held by the resampler until flush) have been heard
    assert n_frames - 1 <= live.classifier.frames <= n_frames
    with torch.inference_mode():
        running = model.forward_frames(model.features(x16, 16000).unsqueeze(0))[0].softmax(-1)   # (T, C)
    torch.testing.assert_close(p, running[live.classifier.frames - 1], atol=1e-4, rtol=0)
    assert next(iter(audio.top_k(p, audio.LABELS))).startswith("5")
    # a new rate starts a new stream
    live.feed(16000, np.zeros(1600, dtype=np.int16))
    assert live.resampler.orig_freq == 16000 and live.seconds == pytest.approx(0.1)


def test_stream_handler_messages():
    from mambakit.apps.tabs import audio

    label, text, state = audio.ui_stream(None, None)
    assert label == {} and "Waiting" in text and isinstance(state, LiveKeywordSpotter)
    label, text, state = audio.ui_stream((48000, np.zeros(4800, dtype=np.int16)), state)
    assert len(label) == 5 and "Heard 0.1 s at 48000 Hz" in text and "KB" in text
