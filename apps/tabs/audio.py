"""Keyword spotting: spoken digits (FSDD) with the causal frame Mamba, offline and streaming.

A clip (upload, microphone recording or example) is read as WAV, mixed down to mono,
resampled to the model's 16 kHz and turned into the normalised 128-bin fbank the model was
trained on. The *clip* prediction pads or centre-crops the features to 100 frames (1 s),
exactly as the recipe evaluates its test set; the *running* prediction feeds the same audio
to ``StreamingClassifier`` in 100 ms chunks and shows what the model would have said as the
audio arrived (its recurrent state has a fixed size, whatever the length). The *live* mode
does the same on the microphone stream, resampling chunk by chunk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

import mambakit.audio
from mambakit.audio.data import read_audio
from mambakit.audio.frontend import is_silent, pad_or_crop, prepare_waveform
from mambakit.audio.models import load_model
from mambakit.audio.streaming import StreamingClassifier

from ..audio_stream import LiveKeywordSpotter
from ..cards import card_markdown, card_updater
from ..common import examples, figure, top_k
from ..limits import MAX_AUDIO_SECONDS, InputError, check_upload, ui_errors
from ..models import ShippedModel

NAME = "audio"
TITLE = "Keyword spotting"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LABELS = [f"{d} ({w})" for d, w in enumerate(WORDS)]
CHUNK_MS = 100.0

MODEL = ShippedModel(
    key="fsdd-frame-mamba",
    directory=Path(mambakit.audio.__file__).resolve().parent / "checkpoints" / "fsdd-frame-mamba",
    load=load_model,
    typical_input=lambda m: (torch.zeros(1, m.config.max_frames, m.num_bins),),
    latency_input="one 1-s clip (100 fbank frames)",
)
MODELS = [MODEL]


@dataclass
class ClipPrediction:
    """``probs (C,)`` of the clip (1-s window, as evaluated in training); ``running (T, C)``:
    the streaming prediction after each 100 ms chunk, at ``times (T,)`` seconds."""

    probs: torch.Tensor
    running: torch.Tensor
    times: np.ndarray
    seconds: float
    sample_rate: int
    notes: list[str] = field(default_factory=list)

    def top(self, k: int = 5) -> dict[str, float]:
        return top_k(self.probs, LABELS, k)


def load_clip(path: Optional[str]) -> tuple[torch.Tensor, int, list[str]]:
    """An audio file -> ``(mono waveform (N,) at the model's rate, original rate, notes)``.

    Raises ``ValueError`` (readable) for a wrong type, empty, unreadable, too long or too short
    file.
    """
    p = check_upload(path, "audio", "audio file")
    wav, rate = read_audio(p)                                                 # (C, N)
    target = MODEL.model().fbank.config.sample_rate
    seconds = wav.shape[-1] / rate
    if seconds > MAX_AUDIO_SECONDS:
        raise InputError(f"'{p.name}' is {seconds:.1f} s long; the limit here is {MAX_AUDIO_SECONDS:.0f} s "
                         "(the model listens for a single spoken digit)")
    notes = []
    if wav.shape[0] > 1:
        notes.append(f"{wav.shape[0]} channels mixed down to mono")
    if rate != target:
        notes.append(f"resampled from {rate} Hz to {target} Hz")
    x = prepare_waveform(wav, rate, target)                                   # (N,)
    if x.numel() < MODEL.model().fbank.config.win_length:
        raise InputError(f"'{p.name}' is {1000 * seconds:.0f} ms long: too short for one 25 ms analysis window")
    if is_silent(x):
        notes.append("the clip is silent: the prediction below means nothing")
    return x, rate, notes


def classify_waveform(x: torch.Tensor, sample_rate: int, notes: Optional[list[str]] = None) -> ClipPrediction:
    """Mono ``x (N,)`` at the model's rate -> ``ClipPrediction``."""
    model = MODEL.model()
    notes = list(notes or [])
    with torch.inference_mode():
        feats = model.features(x, model.fbank.config.sample_rate)            # (T, F) normalised
        if feats.shape[0] > model.config.max_frames:
            notes.append(f"longer than {model.config.max_frames / 100:.0f} s: the clip prediction uses the centred "
                         f"{model.config.max_frames / 100:.0f} s (as the test set); the running one hears it all")
        window = pad_or_crop(feats, model.config.max_frames)                  # (100, F)
        probs = model(window.unsqueeze(0)).softmax(-1)[0]                     # (C,)
        running = StreamingClassifier(model).run(x, chunk_ms=CHUNK_MS)        # list of (C,)
    seconds = x.numel() / model.fbank.config.sample_rate
    times = np.minimum(np.arange(1, len(running) + 1) * CHUNK_MS / 1000.0, seconds)
    return ClipPrediction(probs, torch.stack(running), times, seconds, sample_rate, notes)


def classify_clip(path: Optional[str]) -> ClipPrediction:
    """An audio file -> ``ClipPrediction`` (see the module doc)."""
    x, rate, notes = load_clip(path)
    return classify_waveform(x, rate, notes)


def running_figure(pred: ClipPrediction, k: int = 3):
    """The running probability of the clip's top-``k`` digits against time."""
    fig = figure(7.0, 2.8)
    ax = fig.add_subplot()
    order = torch.argsort(pred.probs, descending=True).tolist()
    for rank, c in enumerate(order):
        curve = pred.running[:, c].numpy()
        if rank < k:
            ax.plot(pred.times, curve, marker="o", ms=3, lw=1.8, label=LABELS[c])
        else:
            ax.plot(pred.times, curve, color="0.85", lw=0.8, label="other digits" if rank == k else None)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(pred.times[-1], 0.1))
    ax.set_xlabel("seconds of audio heard")
    ax.set_ylabel("probability")
    ax.set_title(f"Running prediction, one update per {CHUNK_MS:.0f} ms chunk (recurrent state, streaming)",
                 fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def summary(pred: ClipPrediction) -> str:
    best = max(pred.top(1).items(), key=lambda kv: kv[1])
    lines = [f"**Heard: {best[0]}** ({100 * best[1]:.1f}%), {pred.seconds:.2f} s of audio at "
             f"{pred.sample_rate} Hz."]
    lines += [f"- {n}" for n in pred.notes]
    return "\n".join(lines)


# ---- Gradio handlers -----------------------------------------------------------------------------
@ui_errors
def ui_classify(audio: Optional[str]) -> tuple[dict[str, float], Any, str]:
    pred = classify_clip(audio)
    return pred.top(5), running_figure(pred), summary(pred)


@ui_errors
def ui_stream_start() -> tuple[LiveKeywordSpotter, dict, str]:
    return LiveKeywordSpotter(MODEL.model()), {}, "Listening..."


@ui_errors
def ui_stream(chunk: Optional[tuple[int, np.ndarray]], state: Optional[LiveKeywordSpotter]):
    if state is None:
        state = LiveKeywordSpotter(MODEL.model())
    if chunk is None:
        return {}, "Waiting for audio...", state
    rate, samples = chunk
    if state.seconds > MAX_AUDIO_SECONDS:
        return (top_k(state.last, LABELS) if state.last is not None else {},
                f"Stopped listening after {MAX_AUDIO_SECONDS:.0f} s; press stop, then record again.", state)
    probs = state.feed(int(rate), samples)
    if probs is None:
        return {}, "Waiting for the first 25 ms of audio...", state
    text = (f"Heard {state.seconds:.1f} s at {rate} Hz (resampled to 16 kHz on the fly); recurrent state: "
            f"{state.state_bytes() / 1024:.1f} KB, the same size whatever the length.")
    return top_k(probs, LABELS), text, state


def build() -> None:
    """The tab's components (inside an open ``gr.Tab``)."""
    import gradio as gr

    gr.Markdown("Say a digit (0-9) in English, or pick a recording. The model is a causal Mamba over 10 ms "
                "fbank frames trained on the Free Spoken Digit Dataset (5 speakers, 8 kHz recordings).")
    with gr.Tabs():
        with gr.Tab("Clip (upload or record)", id="audio-clip"):
            with gr.Row():
                with gr.Column(scale=1):
                    audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio (WAV)",
                                     elem_id="audio-input")
                    button = gr.Button("Recognise", variant="primary", elem_id="audio-run")
                    gr.Examples([[str(p)] for p in examples("audio", (".wav",))], inputs=[audio],
                                label="Examples (FSDD test clips, CC BY-SA 4.0)")
                with gr.Column(scale=1):
                    label = gr.Label(num_top_classes=5, label="Top 5", elem_id="audio-label")
                    info = gr.Markdown(label="Details", elem_id="audio-info")
            plot = gr.Plot(label="As the audio arrived", elem_id="audio-plot", format="png")
            button.click(ui_classify, inputs=[audio], outputs=[label, plot, info], api_name="classify_audio")
        with gr.Tab("Live microphone (streaming)", id="audio-live"):
            gr.Markdown("Press record and speak: the prediction updates every 100 ms from the model's "
                        "recurrent state (each chunk is resampled to 16 kHz as it arrives).")
            state = gr.State(None)
            with gr.Row():
                mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                               elem_id="audio-mic")
                live_label = gr.Label(num_top_classes=5, label="Running prediction", elem_id="audio-live-label")
            live_info = gr.Markdown(elem_id="audio-live-info")
            mic.start_recording(ui_stream_start, outputs=[state, live_label, live_info], api_visibility="private")
            mic.stream(ui_stream, inputs=[mic, state], outputs=[live_label, live_info, state],
                       stream_every=CHUNK_MS / 1000.0, time_limit=int(MAX_AUDIO_SECONDS) + 5,
                       api_visibility="private", concurrency_limit=None, show_progress="hidden")
    card = gr.Markdown(card_markdown(MODELS, measure=False), elem_id="audio-card", elem_classes=["model-card"])
    gr.on(None, card_updater(MODELS), outputs=[card], api_name="card_audio", show_progress="hidden")
