"""DNA: coding vs non-coding, and gene strand, of Klebsiella sequence with RC-equivariant Mamba.

Both models are Caduceus-style (bidirectional Mamba with reverse-complement parameter
sharing), fine-tuned on 200-bp windows of three Klebsiella pneumoniae genomes and tested on a
fourth (MGH78578). Input: pasted sequence or FASTA (the first record is used), or a FASTA /
text file; one token per base (``CharTokenizer``: lower case read as upper case, IUPAC
ambiguity codes as N, anything else refused with its position).

Per-base attribution: the gradient of the predicted class's log-odds with respect to the
one-hot base at each position, centred over A/C/G/T (score = gradient at the actual base
minus the mean over the four bases). It is the first-order estimate of in-silico mutagenesis:
how much the log-odds would drop if that base were replaced by an average other base. One
forward and one backward pass, so it stays cheap for the longest input the tab accepts.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import mambakit.genomics
from mambakit.genomics.models import Caduceus, RCPSEmbedding
from mambakit.genomics.tokenizers import BASE_OFFSET, BASES, IUPAC_AMBIGUOUS, CharTokenizer

from ..cards import card_markdown, card_updater
from ..common import examples, figure, top_k
from ..limits import MAX_DNA_BASES, MIN_DNA_BASES, InputError, check_upload, ui_errors
from ..models import ShippedModel

NAME = "genomics"
TITLE = "DNA"
WINDOW = 200
_CKPT = Path(mambakit.genomics.__file__).resolve().parent / "checkpoints"


def _shipped(key: str) -> ShippedModel:
    return ShippedModel(key=key, directory=_CKPT / key, load=lambda d: load_model(d),
                        typical_input=lambda m: (torch.full((1, WINDOW), BASE_OFFSET, dtype=torch.long),),
                        latency_input=f"one {WINDOW}-bp window")


TASKS = {
    "coding": ("Coding vs non-coding", _shipped("klebsiella-coding-h100"), ["non-coding", "coding"]),
    "strand": ("Gene strand (of a coding window)", _shipped("klebsiella-strand-h100"),
               ["minus strand (-)", "plus strand (+)"]),
}
MODELS = [spec[1] for spec in TASKS.values()]
TASK_CHOICES = [(spec[0], key) for key, spec in TASKS.items()]
ACGT = [BASE_OFFSET + BASES.index(b) for b in "ACGT"]


@dataclass
class DNAPrediction:
    """``probs (C,)`` with ``labels``; ``attribution (L,)`` per base of ``sequence``."""

    name: str
    sequence: str
    labels: list[str]
    probs: torch.Tensor
    attribution: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> str:
        return self.labels[int(self.probs.argmax())]

    def top(self, k: int = 5) -> dict[str, float]:
        return top_k(self.probs, self.labels, k)


def parse_sequence_text(text: str) -> tuple[str, str, list[str]]:
    """Pasted text -> ``(name, raw sequence, notes)``. FASTA (``>`` header lines) keeps its first
    record; plain text is one sequence. Whitespace and line breaks are removed; characters are
    checked later by the tokenizer."""
    if not isinstance(text, str):
        raise TypeError(f"sequence: expected text, got {type(text).__name__}")
    notes: list[str] = []
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln and not ln.startswith(";")]
    if not lines:
        raise InputError("no sequence given: paste DNA (A, C, G, T, N) or FASTA, or upload a file")
    if lines[0].startswith(">"):
        headers = [i for i, ln in enumerate(lines) if ln.startswith(">")]
        end = headers[1] if len(headers) > 1 else len(lines)
        name = lines[0][1:].split()[0] if lines[0][1:].split() else "sequence"
        body = lines[1:end]
        if len(headers) > 1:
            notes.append(f"{len(headers)} FASTA records: the first ({name}) is used")
        if not body:
            raise InputError(f"FASTA record {name!r} has no sequence lines")
    else:
        if any(ln.startswith(">") for ln in lines):
            raise InputError("text before the first '>' header: paste either a plain sequence or FASTA")
        name, body = "pasted sequence", lines
    return name, "".join("".join(ln.split()) for ln in body), notes


def read_sequence_file(path: Optional[str]) -> str:
    """An uploaded FASTA / text file -> its text (ASCII)."""
    p = check_upload(path, "dna", "sequence file")
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b" or raw[:6] == b"\xfd7zXZ\x00":
        raise InputError(f"'{p.name}' is compressed: upload the plain FASTA text")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise InputError(f"'{p.name}' is not a text FASTA file (byte {err.start} is not ASCII)") from None


def encode(sequence: str) -> tuple[torch.Tensor, list[str]]:
    """Sequence -> ``ids (L,)`` and notes; ``ValueError`` names the first invalid character."""
    notes: list[str] = []
    if len(sequence) < MIN_DNA_BASES:
        raise InputError(f"the sequence has {len(sequence)} bases; at least {MIN_DNA_BASES} are needed")
    if len(sequence) > MAX_DNA_BASES:
        raise InputError(f"the sequence has {len(sequence):,} bases; this demo takes up to {MAX_DNA_BASES:,} "
                         f"(the models were trained on {WINDOW}-bp windows)")
    ids = CharTokenizer().encode(sequence)                                    # (L,); checks characters
    ambiguous = sum(sequence.upper().count(c) for c in IUPAC_AMBIGUOUS)
    if ambiguous:
        notes.append(f"{ambiguous} IUPAC ambiguity code(s) read as N")
    if any(c.islower() for c in sequence):
        notes.append("lower-case bases read as upper case")
    return ids, notes


class _OneHotInput:
    """The one-hot leaf ``(1, L, V)`` whose gradient is read after backward, for one ``ids``."""

    def __init__(self, ids: torch.Tensor, vocab: int) -> None:
        self.ids = ids
        self.onehot = F.one_hot(ids, vocab).to(torch.float32).requires_grad_(True)   # (1, L, V)

    def embed(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        if isinstance(module, RCPSEmbedding):
            w = module.embedding.weight                                          # (V, D/2)
            comp = self.onehot[..., module.comp]                                 # one-hot of comp[ids]
            out = torch.cat([self.onehot @ w, (comp @ w).flip(-1)], dim=-1)      # (1, L, D)
        else:
            out = self.onehot @ module.weight
        if not torch.allclose(out, output, atol=1e-5):
            raise RuntimeError("one-hot embedding does not reproduce the model's embedding")
        return out


_ACTIVE = threading.local()     # the _OneHotInput of the attribution running in this thread


def _embedding_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> Optional[torch.Tensor]:
    """Registered once per model at load: rebuilds the embedding output from a one-hot leaf
    tensor, only inside ``attribution`` in the calling thread and for its exact ``ids``, so
    concurrent plain forward passes on the shared model are untouched."""
    active = getattr(_ACTIVE, "input", None)
    if active is None or args[0] is not active.ids:
        return None
    return active.embed(module, output)


def load_model(directory: Path) -> Caduceus:
    """``Caduceus.from_pretrained`` with the attribution hook on its embedding."""
    model = Caduceus.from_pretrained(directory)
    model.backbone.embedding.register_forward_hook(_embedding_hook)
    return model


def attribution(model: Caduceus, ids: torch.Tensor, target: int) -> np.ndarray:
    """Per-base attribution ``(L,)`` for class ``target`` of ``ids (L,)`` (see the module doc).
    ``model`` must come from ``load_model`` (it carries the hook)."""
    batch = ids.unsqueeze(0)                                                     # (1, L)
    active = _OneHotInput(batch, model.config.vocab_size)
    _ACTIVE.input = active
    try:
        with torch.enable_grad():
            logits = model(batch)[0]                                             # (C,)
            if not active.onehot.requires_grad or logits.grad_fn is None:
                raise RuntimeError("attribution: the model was not loaded with load_model (no hook)")
            others = torch.cat([logits[:target], logits[target + 1:]])
            log_odds = logits[target] - torch.logsumexp(others, 0)
            (grad,) = torch.autograd.grad(log_odds, active.onehot)
    finally:
        _ACTIVE.input = None
    g = grad[0]                                                                  # (L, V)
    actual = g.gather(1, ids.view(-1, 1))[:, 0]                                  # (L,)
    return (actual - g[:, ACGT].mean(1)).numpy().astype(np.float64)


def classify_dna(text: Optional[str], file: Optional[str] = None, task: str = "coding") -> DNAPrediction:
    """Pasted text or an uploaded file (the file wins) -> ``DNAPrediction`` for ``task``."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)}, got {task!r}")
    _, shipped, labels = TASKS[task]
    if file:
        text = read_sequence_file(file)
    name, sequence, notes = parse_sequence_text(text or "")
    ids, more = encode(sequence)
    notes += more
    if len(sequence) != WINDOW:
        notes.append(f"{len(sequence)} bases: the model was trained and tested on {WINDOW}-bp windows, so this "
                     "prediction is outside the measured setting")
    model = shipped.model()
    with torch.inference_mode():
        probs = model(ids.unsqueeze(0)).softmax(-1)[0]                          # (C,)
    attr = attribution(model, ids, int(probs.argmax()))
    return DNAPrediction(name, sequence.upper(), labels, probs, attr, notes)


BASE_COLORS = {"A": "#2ca02c", "C": "#1f77b4", "G": "#ff9f1c", "T": "#d62728", "N": "#7f7f7f"}


def attribution_figure(pred: DNAPrediction):
    """Bar track of the per-base attribution, coloured by base."""
    from matplotlib.patches import Patch

    n = len(pred.sequence)
    width = min(12.0, 4.0 + n / 25)
    fig = figure(width, 2.6)
    ax = fig.add_subplot()
    colors = [BASE_COLORS.get(b, "#7f7f7f") for b in pred.sequence]
    bar_points = 72 * (width - 1.0) / n                                     # one position's width in points
    ax.vlines(np.arange(n), 0, pred.attribution, colors=colors, linewidth=max(0.3, 0.9 * bar_points))
    ax.axhline(0, color="0.3", lw=0.6)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("position (bp)")
    ax.set_ylabel("attribution")
    ax.set_title(f"Per-base attribution for '{pred.predicted}' (gradient x one-hot input, centred over ACGT; "
                 f"> 0: the base supports it)", fontsize=9)
    handles = [Patch(color=c, label=b) for b, c in BASE_COLORS.items() if b in set(pred.sequence)]
    ax.legend(handles=handles, fontsize=7, ncol=len(handles), loc="upper right")
    return fig


def highlighted(pred: DNAPrediction) -> list[tuple[str, float]]:
    """``[(base, score in [-1, 1])]`` for ``gr.HighlightedText`` (scaled by the largest |score|)."""
    scale = float(np.abs(pred.attribution).max()) or 1.0
    return [(b, float(s / scale)) for b, s in zip(pred.sequence, pred.attribution)]


# ---- Gradio handlers -----------------------------------------------------------------------------
@ui_errors
def ui_classify(sequence: Optional[str], file: Optional[str] = None, task: str = "coding"
                ) -> tuple[dict, Any, list, str]:
    pred = classify_dna(sequence, file, task or "coding")
    p = float(pred.probs.max())
    lines = [f"**{pred.predicted}** ({100 * p:.1f}%) for `{pred.name}`, {len(pred.sequence)} bp."]
    lines += [f"- {n}" for n in pred.notes]
    return pred.top(5), attribution_figure(pred), highlighted(pred), "\n".join(lines)


def _example_texts() -> list[list[str]]:
    return [[p.read_text()] for p in examples("dna", (".fasta",))]


def build() -> None:
    """The tab's components (inside an open ``gr.Tab``)."""
    import gradio as gr

    gr.Markdown("Paste a DNA sequence or FASTA (best: a 200-bp window of a bacterial genome) or upload a FASTA "
                "file. The examples are windows of the held-out genome MGH78578.")
    with gr.Row():
        with gr.Column(scale=1):
            text = gr.Textbox(lines=6, max_lines=12, label="Sequence or FASTA", elem_id="dna-input",
                              placeholder=">name\nACGT...")
            file = gr.File(label="...or a FASTA / text file", file_types=[".fa", ".fasta", ".fna", ".txt"],
                           type="filepath", elem_id="dna-file", height=120)
            task = gr.Radio(TASK_CHOICES, value="coding", label="Task", elem_id="dna-task")
            button = gr.Button("Classify", variant="primary", elem_id="dna-run")
            gr.Examples(_example_texts(), inputs=[text], label="Examples (NCBI GenBank, Klebsiella MGH78578)")
        with gr.Column(scale=1):
            label = gr.Label(num_top_classes=5, label="Class probabilities", elem_id="dna-label")
            info = gr.Markdown(label="Details", elem_id="dna-info")
    plot = gr.Plot(label="Per-base attribution", elem_id="dna-plot", format="png")
    track = gr.HighlightedText(label="Sequence coloured by attribution (red: supports the prediction)",
                               show_legend=False, show_inline_category=False, elem_id="dna-track")
    button.click(ui_classify, inputs=[text, file, task], outputs=[label, plot, track, info], api_name="classify_dna")
    card = gr.Markdown(card_markdown(MODELS, measure=False), elem_id="dna-card", elem_classes=["model-card"])
    gr.on(None, card_updater(MODELS), outputs=[card], api_name="card_dna", show_progress="hidden")
