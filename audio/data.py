"""Audio datasets: reading files, a labelled folder, SpeechCommands' layout, FSDD and features.

Reading: WAV (PCM 8/16/24/32-bit, float32) with the standard library's ``wave`` module (no
extra dependency, works in a fresh venv); FLAC/OGG and other formats through ``soundfile``
when it is installed. Unreadable or corrupt files raise ``ValueError`` naming the file.

Datasets follow torchvision's shape: ``root``, a split, ``transform``; no downloads, and a
missing file or folder raises ``FileNotFoundError`` naming it. Items are
``(waveform (C, N) float32, sample_rate, label)`` for the raw datasets; ``FeatureDataset``
turns any of them into ``(features (max_frames, F), label)`` pairs for training.
"""
from __future__ import annotations

import csv
import random
import re
import wave
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mambakit.data.paths import dataset_path

from .frontend import Fbank, FbankConfig, SpecAugment, feature_stats, pad_or_crop, prepare_waveform

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo")
FSDD_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def read_audio(path: str | Path) -> tuple[torch.Tensor, int]:
    """A file -> ``(waveform (C, N) float32 in [-1, 1], sample_rate)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path), "rb") as w:
                channels, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
                raw = w.readframes(n)
        except (wave.Error, EOFError, OSError) as err:
            if "unknown format: 3" in str(err):  # IEEE float WAV: wave cannot read it
                return _read_soundfile(path)
            raise ValueError(f"cannot read WAV file {path}: {err}") from err
        if width == 3:  # 24-bit: widen to int32
            b = np.frombuffer(raw, dtype=np.uint8)[: len(raw) // 3 * 3].reshape(-1, 3)
            data = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
            data = np.where(data >= 1 << 23, data - (1 << 24), data).astype(np.float32) / float(1 << 23)
        elif width in (1, 2, 4):
            dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
            data = np.frombuffer(raw[: len(raw) // width * width], dtype=dtype).astype(np.float32)
            data = (data - 128.0) / 128.0 if width == 1 else data / float(2 ** (8 * width - 1))
        else:
            raise ValueError(f"{path}: unsupported WAV sample width of {width} bytes")
        if data.size % channels:
            raise ValueError(f"{path}: truncated WAV data ({data.size} samples for {channels} channels)")
        wav = torch.from_numpy(data.reshape(-1, channels).T.copy())            # (C, N)
        return wav, rate
    return _read_soundfile(path)


def _read_soundfile(path: Path) -> tuple[torch.Tensor, int]:
    try:
        import soundfile
    except ImportError as err:
        raise ValueError(f"{path}: reading {path.suffix} files needs the 'soundfile' package "
                         "(pip install soundfile); WAV files are read without it") from err
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)   # (N, C)
    except Exception as err:  # soundfile raises its own error types for corrupt files
        raise ValueError(f"cannot read audio file {path}: {err}") from err
    return torch.from_numpy(data.T.copy()), int(rate)


class AudioFolder(Dataset):
    """Audio files under ``root`` with labels from the file name or a CSV.

    ``labels``: a regex with one group applied to the file name (default: the text before the
    first ``_``), or the path of a CSV with columns ``filename,label`` (paths relative to
    ``root``). ``classes`` (sorted label names) maps labels to ids. Item:
    ``(waveform (C, N), sample_rate, class_id)`` after ``transform(waveform, sample_rate)``.
    """

    def __init__(self, root: str | Path, labels: str = r"^([^_]+)_", transform: Optional[Callable] = None,
                 extensions: Sequence[str] = AUDIO_EXTENSIONS, files: Optional[Sequence[str]] = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"audio folder not found: {self.root}")
        self.transform = transform
        if str(labels).lower().endswith(".csv"):
            csv_path = Path(labels) if Path(labels).is_absolute() else self.root / labels
            if not csv_path.is_file():
                raise FileNotFoundError(f"label CSV not found: {csv_path}")
            with open(csv_path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if not rows or not {"filename", "label"} <= set(rows[0]):
                raise ValueError(f"{csv_path}: expected columns 'filename,label'")
            pairs = [(self.root / r["filename"], r["label"]) for r in rows]
        else:
            pattern = re.compile(labels)
            paths = ([self.root / f for f in files] if files is not None else
                     sorted(p for p in self.root.rglob("*") if p.suffix.lower() in extensions))
            pairs = []
            for p in paths:
                m = pattern.search(p.name)
                if m is None or not m.groups():
                    raise ValueError(f"file name {p.name!r} does not match the label pattern {labels!r}")
                pairs.append((p, m.group(1)))
        if not pairs:
            raise FileNotFoundError(f"no audio files ({', '.join(extensions)}) in {self.root}")
        self.classes = sorted({label for _, label in pairs})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(p, self.class_to_idx[label]) for p, label in pairs]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        wav, rate = read_audio(path)
        if self.transform is not None:
            wav = self.transform(wav, rate)
        return wav, rate, label


class SpeechCommandsFolder(AudioFolder):
    """torchaudio's SPEECHCOMMANDS on-disk layout, read without downloading.

    ``root`` is the folder holding ``<label>/<file>.wav``, ``validation_list.txt`` and
    ``testing_list.txt`` (e.g. ``.../SpeechCommands/speech_commands_v0.02``). ``split`` is
    ``"training"``, ``"validation"`` or ``"testing"``; ``_background_noise_`` is skipped.
    """

    def __init__(self, root: str | Path, split: str = "training", transform: Optional[Callable] = None) -> None:
        root = Path(root)
        if split not in ("training", "validation", "testing"):
            raise ValueError(f"split: expected 'training', 'validation' or 'testing', got {split!r}")
        lists = {}
        for name in ("validation_list.txt", "testing_list.txt"):
            if not (root / name).is_file():
                raise FileNotFoundError(f"SpeechCommands list not found: {root / name}")
            lists[name] = {line.strip() for line in (root / name).read_text().splitlines() if line.strip()}
        held = lists["validation_list.txt"] | lists["testing_list.txt"]
        if split == "training":
            files = sorted(str(p.relative_to(root)) for p in root.glob("*/*.wav")
                           if not p.parent.name.startswith("_") and str(p.relative_to(root)) not in held)
        else:
            files = sorted(lists["validation_list.txt" if split == "validation" else "testing_list.txt"])
        missing = [f for f in files if not (root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"SpeechCommands file listed but missing: {root / missing[0]}")
        self._files = files
        super().__init__(root, labels=r"^(.*)$", transform=transform, files=files)
        # labels are the folder names, not the file names
        labels = [f.split("/")[0] for f in files]
        self.classes = sorted(set(labels))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(root / f, self.class_to_idx[c]) for f, c in zip(files, labels)]


class FSDD(Dataset):
    """Free Spoken Digit Dataset: ``{digit}_{speaker}_{index}.wav``, 8 kHz mono.

    ``split``: ``"train"`` / ``"test"``. ``protocol``: ``"standard"`` (index 0-4 of every
    speaker/digit is test) or ``"speaker:<name>"`` (that speaker is test, the others train).
    Item: ``(waveform (1, N), 8000, digit)``; ``speakers[i]`` names the speaker of item ``i``.
    """

    classes = [str(d) for d in range(10)]

    def __init__(self, root: Optional[str | Path] = None, split: str = "train", protocol: str = "standard",
                 transform: Optional[Callable] = None) -> None:
        self.root = Path(root) if root else dataset_path("audio", "fsdd")
        folder = self.root / "recordings"
        if not folder.is_dir():
            raise FileNotFoundError(f"FSDD recordings folder not found: {folder}")
        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        held_speaker = None
        if protocol.startswith("speaker:"):
            held_speaker = protocol.split(":", 1)[1]
        elif protocol != "standard":
            raise ValueError(f"protocol: expected 'standard' or 'speaker:<name>', got {protocol!r}")
        self.split, self.protocol, self.transform = split, protocol, transform
        items = []
        for p in sorted(folder.glob("*.wav")):
            m = FSDD_NAME.match(p.name)
            if m is None:
                continue
            digit, speaker, index = int(m.group(1)), m.group(2), int(m.group(3))
            is_test = (index < 5) if held_speaker is None else (speaker == held_speaker)
            if is_test == (split == "test"):
                items.append((p, digit, speaker))
        all_speakers = {m.group(2) for p in folder.glob("*.wav") if (m := FSDD_NAME.match(p.name))}
        if held_speaker is not None and held_speaker not in all_speakers:
            raise ValueError(f"unknown FSDD speaker {held_speaker!r}; speakers: {sorted(all_speakers)}")
        if not items:
            raise FileNotFoundError(f"no FSDD recordings for split {split!r} in {folder}")
        self.samples = [(p, d) for p, d, _ in items]
        self.speakers = [s for _, _, s in items]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, digit = self.samples[i]
        wav, rate = read_audio(path)
        if self.transform is not None:
            wav = self.transform(wav, rate)
        return wav, rate, digit


def compute_features(dataset: Dataset, fbank_config: FbankConfig) -> list[torch.Tensor]:
    """Un-normalised log-mel features ``(T_i, F)`` of every clip of a raw dataset."""
    fbank = Fbank(fbank_config)
    out = []
    with torch.no_grad():
        for i in range(len(dataset)):
            wav, rate, _ = dataset[i]
            x = prepare_waveform(wav, rate, fbank_config.sample_rate)
            if x.numel() < fbank_config.win_length:  # documented: very short clips are padded to one window
                x = torch.nn.functional.pad(x, (0, fbank_config.win_length - x.numel()))
            out.append(fbank(x))
    return out


class FeatureDataset(Dataset):
    """Features for training: ``(features (max_frames, F) float32, label)``.

    ``features`` are un-normalised ``(T_i, F)`` matrices (``compute_features``), normalised
    with ``fbank_config``'s mean/std, cropped (centred, or at a random offset when
    ``random_crop``) or padded with 0 to ``max_frames``. ``augment`` (a ``SpecAugment``)
    masks each item; ``mixup`` (alpha > 0) blends each item with a random other one and
    returns soft targets ``(C,)`` instead of class ids (training sets only).
    """

    def __init__(self, features: Sequence[torch.Tensor], labels: Sequence[int], fbank_config: FbankConfig,
                 max_frames: int, num_classes: int, augment: Optional[SpecAugment] = None,
                 mixup: float = 0.0, random_crop: bool = False) -> None:
        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature matrices but {len(labels)} labels")
        self.features = [(f - fbank_config.mean) / (2.0 * fbank_config.std) for f in features]
        self.labels = [int(y) for y in labels]
        self.max_frames, self.num_classes = max_frames, num_classes
        self.augment, self.mixup, self.random_crop = augment, float(mixup), random_crop
        if self.augment is not None:
            self.augment.train()

    def __len__(self) -> int:
        return len(self.features)

    def _item(self, i: int) -> torch.Tensor:
        f = self.features[i]
        offset = None
        if self.random_crop and f.shape[0] > self.max_frames:
            offset = random.randint(0, f.shape[0] - self.max_frames)
        return pad_or_crop(f, self.max_frames, offset)

    def __getitem__(self, i: int):
        x, y = self._item(i), self.labels[i]
        if self.mixup > 0:
            j = random.randrange(len(self))
            lam = float(np.random.beta(self.mixup, self.mixup))
            x = lam * x + (1 - lam) * self._item(j)
            target = torch.zeros(self.num_classes)
            target[y] += lam
            target[self.labels[j]] += 1 - lam
        else:
            target = torch.tensor(y)
        if self.augment is not None:
            x = self.augment(x.unsqueeze(0))[0]
        return x.float(), target


def fit_feature_stats(features: Sequence[torch.Tensor], fbank_config: FbankConfig) -> FbankConfig:
    """A copy of ``fbank_config`` with ``mean``/``std`` measured on ``features`` (training set)."""
    mean, std = feature_stats(features)
    return FbankConfig(**{**fbank_config.to_dict(), "mean": mean, "std": std})
