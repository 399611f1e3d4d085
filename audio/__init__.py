"""Audio models on the mambakit core: fbank patches, bidirectional Mamba, streaming keyword spotting.

- ``frontend``: waveform -> 128-bin log-mel fbank (Kaldi-compatible or ``MelSpectrogram``),
  mono mixdown, resampling, dataset normalisation, SpecAugment, streaming fbank.
- ``tokenizers``: 2-D spectrogram patches (class token at head / middle / tail / none) and
  one token per frame.
- ``models``: ``AudioMamba`` (bidirectional, AuM-like), ``FrameMamba`` (causal, streams),
  ``PatchTransformer`` (AST-style baseline with timm ViT blocks); tiny/small/base constructors.
- ``streaming``: ``StreamingClassifier``, chunk-by-chunk prediction on the recurrent state.
- ``data``: WAV/FLAC reading, ``AudioFolder``, ``SpeechCommandsFolder``, ``FSDD``, ``FeatureDataset``.
- ``recipes``: ``mambakit train audio fsdd-audio-mamba | fsdd-frame-mamba | fsdd-ast``.
"""
from .data import FSDD, AudioFolder, FeatureDataset, SpeechCommandsFolder, compute_features, read_audio
from .frontend import Fbank, FbankConfig, SpecAugment, StreamingFbank, feature_stats, prepare_waveform
from .models import (AudioMamba, AudioModelConfig, FrameMamba, PatchTransformer, ast_base, ast_small, ast_tiny,
                     audio_mamba_base, audio_mamba_small, audio_mamba_tiny, build_model, frame_mamba_base,
                     frame_mamba_small, frame_mamba_tiny, load_model)
from .streaming import StreamingClassifier
from .tokenizers import FrameTokenizer, PatchTokenizer

__all__ = [
    "FbankConfig", "Fbank", "SpecAugment", "StreamingFbank", "feature_stats", "prepare_waveform",
    "PatchTokenizer", "FrameTokenizer",
    "AudioModelConfig", "AudioMamba", "FrameMamba", "PatchTransformer", "build_model", "load_model",
    "audio_mamba_tiny", "audio_mamba_small", "audio_mamba_base", "frame_mamba_tiny", "frame_mamba_small",
    "frame_mamba_base", "ast_tiny", "ast_small", "ast_base",
    "StreamingClassifier",
    "read_audio", "AudioFolder", "SpeechCommandsFolder", "FSDD", "FeatureDataset", "compute_features",
]
