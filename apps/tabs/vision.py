"""Image classification: Fashion-MNIST with a micro Vision Mamba (Vim).

Fashion-MNIST images are 28x28 grayscale, a light garment on a black background. An uploaded
picture is brought to that form: transparency flattened onto white, converted to grayscale,
inverted when its background is light (auto-detected from the border pixels, or forced
either way), padded to a square with its background value and resized to 28x28 (bicubic),
then given the recipe's evaluation transform (``build_transform`` with Fashion-MNIST mean/std,
as in ``mambakit.vision.recipes.build_fashion_mnist``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

import mambakit.vision
from mambakit.vision.data import FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, build_transform
from mambakit.vision.vim import Vim

from ..cards import card_markdown, card_updater
from ..common import examples, top_k
from ..limits import MAX_IMAGE_PIXELS, InputError, check_upload, ui_errors
from ..models import ShippedModel

NAME = "vision"
TITLE = "Image classification"
LABELS = list(FASHION_MNIST_CLASSES)
SIZE = 28
INVERT_CHOICES = ("auto", "invert", "keep")
# The recipe's evaluation data config (vision/recipes.py, build_fashion_mnist).
DATA_CONFIG = {"input_size": (1, SIZE, SIZE), "interpolation": "bicubic", "mean": FASHION_MNIST_MEAN,
               "std": FASHION_MNIST_STD, "crop_pct": 1.0}

MODEL = ShippedModel(
    key="fashion-mnist-vim-micro",
    directory=Path(mambakit.vision.__file__).resolve().parent / "checkpoints" / "fashion-mnist-vim-micro",
    load=Vim.from_pretrained,
    typical_input=lambda m: (torch.zeros(1, 1, SIZE, SIZE),),
    latency_input="one 28x28 image",
)
MODELS = [MODEL]
_EVAL_TRANSFORM = None


def _eval_transform():
    global _EVAL_TRANSFORM
    if _EVAL_TRANSFORM is None:
        _EVAL_TRANSFORM = build_transform(DATA_CONFIG, False)
    return _EVAL_TRANSFORM


@dataclass
class ImagePrediction:
    """``probs (10,)``; ``model_input (28, 28) uint8``: the picture the model saw."""

    probs: torch.Tensor
    model_input: np.ndarray
    notes: list[str] = field(default_factory=list)

    def top(self, k: int = 5) -> dict[str, float]:
        return top_k(self.probs, LABELS, k)


def load_image(path: Optional[str]):
    """A file -> grayscale ``PIL.Image`` (mode ``L``), transparency flattened onto white.

    Raises ``ValueError`` (readable) for a wrong type, empty, undecodable or huge image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = check_upload(path, "image", "image")
    try:
        with Image.open(p) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputError(f"'{p.name}' is {w}x{h} pixels; the limit here is {MAX_IMAGE_PIXELS / 1e6:.0f} "
                                 "megapixels")
            img.seek(0)                                                       # first frame of a GIF
            img = ImageOps.exif_transpose(img)
            img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as err:
        raise InputError(f"'{p.name}' could not be read as an image ({type(err).__name__}: {err})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    if img.mode in ("I", "I;16", "I;16B", "F"):
        a = np.asarray(img, dtype=np.float64)
        span = a.max() - a.min()
        a = (a - a.min()) / span * 255 if span > 0 else np.zeros_like(a)
        img = Image.fromarray(a.astype(np.uint8), mode="L")
    return img.convert("L")


def to_model_input(gray, invert: str = "auto") -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """Grayscale ``PIL.Image`` -> ``(x (1, 1, 28, 28) normalised, preview (28, 28) uint8, notes)``."""
    from PIL import Image

    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert: expected one of {INVERT_CHOICES}, got {invert!r}")
    a = np.asarray(gray, dtype=np.uint8)                                     # (H, W)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    light = float(np.median(border)) > 127.5
    notes = []
    flip = light if invert == "auto" else invert == "invert"
    if flip:
        a = 255 - a
        notes.append("inverted (light background detected)" if invert == "auto" else "inverted (as asked)")
    elif invert == "auto":
        notes.append("not inverted (dark background, like Fashion-MNIST)")
    h, w = a.shape
    if h != w:
        bg = int(np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])))
        side = max(h, w)
        square = np.full((side, side), bg, dtype=np.uint8)
        square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = a
        a = square
        notes.append(f"padded from {w}x{h} to a square")
    img = Image.fromarray(a, mode="L")
    if img.size != (SIZE, SIZE):
        notes.append(f"resized from {img.size[0]}x{img.size[1]} to {SIZE}x{SIZE}")
        img = img.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    x = _eval_transform()(img).unsqueeze(0)                                   # (1, 1, 28, 28)
    return x, np.asarray(img, dtype=np.uint8).copy(), notes


def classify_image(path: Optional[str], invert: str = "auto") -> ImagePrediction:
    """An image file -> ``ImagePrediction`` (see the module doc)."""
    model = MODEL.model()
    x, preview, notes = to_model_input(load_image(path), invert)
    with torch.inference_mode():
        probs = model(x).softmax(-1)[0]
    return ImagePrediction(probs, preview, notes)


def upscale(preview: np.ndarray, factor: int = 8) -> np.ndarray:
    """``(28, 28)`` -> ``(28 * factor, 28 * factor)`` by pixel repetition (crisp preview)."""
    return np.kron(preview, np.ones((factor, factor), dtype=np.uint8))


# ---- Gradio handlers -----------------------------------------------------------------------------
def _payload_path(payload: Any) -> Optional[str]:
    """The server path of an image payload (``preprocess=False`` gives the raw ``FileData``)."""
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", payload)


@ui_errors
def ui_classify(image: Any, invert: str = "auto") -> tuple[dict[str, float], np.ndarray, str]:
    pred = classify_image(_payload_path(image), invert or "auto")
    name, p = next(iter(pred.top(1).items()))
    text = f"**{name}** ({100 * p:.1f}%). Input: " + "; ".join(pred.notes) + "."
    return pred.top(5), upscale(pred.model_input), text


def build() -> None:
    """The tab's components (inside an open ``gr.Tab``)."""
    import gradio as gr

    gr.Markdown("Upload a picture of a garment, shoe or bag (or pick a Fashion-MNIST test image). The model "
                "sees a 28x28 grayscale image with a light object on a dark background, like Fashion-MNIST; "
                "pictures on a light background are inverted automatically.")
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Image",
                             elem_id="vision-input", height=280)
            invert = gr.Radio(list(INVERT_CHOICES), value="auto", label="Invert to a dark background",
                              elem_id="vision-invert")
            button = gr.Button("Classify", variant="primary", elem_id="vision-run")
            gr.Examples([[str(p)] for p in examples("vision", (".png",))], inputs=[image],
                        label="Examples (Fashion-MNIST test images, MIT licence)")
        with gr.Column(scale=1):
            label = gr.Label(num_top_classes=5, label="Top 5", elem_id="vision-label")
            seen = gr.Image(label="What the model sees (28x28)", interactive=False, height=200,
                            elem_id="vision-seen", format="png")
            info = gr.Markdown(label="Details", elem_id="vision-info")
    # preprocess=False: the handler reads the file itself, so a bad upload gets our message
    button.click(ui_classify, inputs=[image, invert], outputs=[label, seen, info], api_name="classify_image",
                 preprocess=False)
    card = gr.Markdown(card_markdown(MODELS, measure=False), elem_id="vision-card", elem_classes=["model-card"])
    gr.on(None, card_updater(MODELS), outputs=[card], api_name="card_vision", show_progress="hidden")
