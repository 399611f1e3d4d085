"""Audio package: frontend, tokenizers, models, streaming == offline, save/load, bad input."""
from __future__ import annotations

import math
import wave

import numpy as np
import pytest
import torch

from mambakit.audio.data import AudioFolder, FeatureDataset, SpeechCommandsFolder, read_audio
from mambakit.audio.frontend import (Fbank, FbankConfig, SpecAugment, StreamingFbank, feature_stats,
                                     prepare_waveform)
from mambakit.audio.models import AudioModelConfig, AudioMamba, FrameMamba, PatchTransformer, build_model, load_model
from mambakit.audio.recipes import classification_loss
from mambakit.audio.streaming import StreamingClassifier
from mambakit.audio.tokenizers import PatchTokenizer


def tiny(arch: str, **kw) -> AudioModelConfig:
    pooling = kw.pop("pooling", "last" if arch == "frame_mamba" else "cls")
    fb = FbankConfig(num_mel_bins=32)
    return AudioModelConfig(arch=arch, num_classes=5, d_model=16, n_layer=2, d_state=4, num_heads=2,
                            max_frames=32, patch_size=[8, 8], patch_stride=[8, 8], pooling=pooling,
                            frontend=fb.to_dict(), **kw)


def speechlike(n: int, gen: torch.Generator, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(n) / rate
    f0 = 200 + 300 * torch.rand(1, generator=gen)
    return 0.3 * torch.sin(2 * math.pi * f0 * t) * torch.rand(n, generator=gen) + 0.01 * torch.randn(n, generator=gen)


def write_wav(path, data: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(data, -1, 1) * 32767).astype("<i2").tobytes())


# ---- frontend ------------------------------------------------------------------------------------
def test_fbank_shapes_and_kinds(seed):
    gen = torch.Generator().manual_seed(seed)
    x = speechlike(16000, gen)
    for kind in ("kaldi", "mel"):
        fb = Fbank(FbankConfig(kind=kind))
        f = fb(x)
        assert f.shape == (1 + (16000 - 400) // 160, 128) == (98, 128)
        assert torch.isfinite(f).all()
        assert fb(torch.stack([x, x])).shape == (2, 98, 128)


def test_prepare_waveform_mixdown_resample_and_errors(seed):
    gen = torch.Generator().manual_seed(seed)
    stereo = torch.randn(2, 8000, generator=gen)
    mono = prepare_waveform(stereo, 8000, 16000)
    assert mono.shape == (16000,)
    same = prepare_waveform(stereo, 16000, 16000)
    torch.testing.assert_close(same, stereo.mean(0))
    pcm = (torch.rand(100, generator=gen) * 2000 - 1000).to(torch.int16)
    torch.testing.assert_close(prepare_waveform(pcm, 16000, 16000), pcm.float() / 32768)
    with pytest.raises(ValueError, match="empty"):
        prepare_waveform(torch.zeros(0), 16000, 16000)
    with pytest.raises(ValueError, match="NaN"):
        prepare_waveform(torch.tensor([0.1, float("nan")] * 300), 16000, 16000)
    with pytest.raises(ValueError, match="channels first"):
        prepare_waveform(torch.randn(8000, 2, generator=gen), 16000, 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        prepare_waveform(stereo, 0, 16000)
    with pytest.raises(TypeError):
        prepare_waveform(np.zeros(10), 16000, 16000)
    with pytest.raises(ValueError, match="shorter than one"):
        Fbank()(torch.randn(300, generator=gen))


def test_silent_audio_is_a_documented_valid_input():
    f = Fbank()(torch.zeros(4000))
    assert torch.isfinite(f).all() and float(f.std()) < 1e-5  # every bin at the log floor


def test_feature_stats_and_specaugment(seed):
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.randn(int(torch.randint(20, 60, (1,), generator=gen)), 8, generator=gen) * 3 + 1 for _ in range(5)]
    mean, std = feature_stats(feats)
    allv = torch.cat([f.flatten() for f in feats]).double()
    assert math.isclose(mean, float(allv.mean()), rel_tol=1e-6)
    assert math.isclose(std, float(allv.std(unbiased=False)), rel_tol=1e-5)
    aug = SpecAugment(freq_width=4, time_width=10, freq_masks=1, time_masks=1, fill=0.0).train()
    x = torch.randn(4, 50, 16, generator=gen) + 5.0
    y = aug(x)
    assert y.shape == x.shape and bool((y == 0).any())
    assert torch.equal(aug.eval()(x), x)


def test_streaming_fbank_equals_offline(seed):
    gen = torch.Generator().manual_seed(seed)
    fb = Fbank(FbankConfig(mean=-5.0, std=3.0))
    x = speechlike(9000, gen)
    offline = fb.normalize(fb(x))
    stream = StreamingFbank(fb)
    sizes = torch.randint(1, 1200, (40,), generator=gen).tolist()
    parts, start = [], 0
    for s in sizes:
        parts.append(stream.push(x[start:start + s]))
        start += s
    parts.append(stream.push(x[start:]))
    torch.testing.assert_close(torch.cat(parts), offline, rtol=1e-4, atol=1e-4)
    assert stream.buffer.numel() < fb.config.win_length + fb.config.hop_length


# ---- tokenizers / models ------------------------------------------------------------------------
@pytest.mark.parametrize("position", ["none", "head", "middle", "tail"])
def test_patch_tokenizer_cls_positions(position, seed):
    torch.manual_seed(seed)
    tok = PatchTokenizer(32, 32, 16, patch_size=8, patch_stride=8, cls_position=position)
    out = tok(torch.randn(3, 32, 32))
    assert out.shape == (3, 16 + (position != "none"), 16)
    if position != "none":
        assert torch.equal(out[:, tok.cls_index], tok.cls_token[0].expand(3, -1))


def test_patch_tokens_are_time_major(seed):
    torch.manual_seed(seed)
    tok = PatchTokenizer(32, 16, 4, patch_size=8, patch_stride=8, cls_position="none")
    feats = torch.randn(1, 32, 16)
    base = tok(feats)
    changed = feats.clone()
    changed[:, 8:16, 8:16] += 1.0  # time patch 1, frequency patch 1 -> token 1 * Fp + 1 = 3
    diff = (tok(changed) - base).abs().sum(-1)[0]
    assert diff.argmax().item() == 3 and int((diff > 0).sum()) == 1


@pytest.mark.parametrize("arch", ["audio_mamba", "frame_mamba", "patch_transformer"])
def test_models_forward_backward_and_api(arch, seed):
    torch.manual_seed(seed)
    model = build_model(tiny(arch))
    x = torch.randn(3, 32, 32)
    y = model(x)
    assert y.shape == (3, 5) and torch.isfinite(y).all()
    classification_loss(y, torch.randint(0, 5, (3,))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"
    assert model.num_classes == 5 and model.num_features == 16
    assert model.forward_head(torch.randn(3, 16), pre_logits=True).shape == (3, 16)
    model.reset_classifier(7)
    assert model(x).shape == (3, 7)
    # shorter clips are padded (patch models) / any length (frame model)
    assert model(torch.randn(2, 20, 32)).shape == (2, 7)


def test_patch_model_refuses_long_input_and_classify_chunks(seed):
    torch.manual_seed(seed)
    model = AudioMamba(tiny("audio_mamba")).eval()
    with pytest.raises(ValueError, match="exceed"):
        model(torch.randn(1, 40, 32))
    gen = torch.Generator().manual_seed(seed)
    probs = model.classify(speechlike(16000, gen), 16000)  # 98 frames > 32: chunked
    assert probs.shape == (5,) and math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)
    stereo_8k = torch.randn(2, 4000, generator=gen) * 0.1
    assert model.classify(stereo_8k, 8000).shape == (5,)


def test_bad_feature_input():
    model = FrameMamba(tiny("frame_mamba"))
    with pytest.raises(ValueError, match="expected shape"):
        model(torch.randn(2, 10, 31))
    with pytest.raises(TypeError):
        model(torch.randint(0, 3, (2, 10, 32)))
    with pytest.raises(ValueError, match="at least one frame"):
        model(torch.randn(2, 0, 32))
    with pytest.raises(ValueError, match="arch"):
        AudioModelConfig(arch="cnn")
    with pytest.raises(ValueError, match="pools with"):
        AudioModelConfig(arch="frame_mamba", pooling="cls")


def test_bidirectional_model_sees_the_future_frame_model_does_not(seed):
    torch.manual_seed(seed)
    bi = AudioMamba(tiny("audio_mamba", pooling="mean", cls_position="none")).eval()
    fr = FrameMamba(tiny("frame_mamba", pooling="mean")).eval()
    x = torch.randn(1, 32, 32)
    x2 = x.clone()
    x2[:, 24:] = torch.randn(1, 8, 32)
    with torch.no_grad():
        h1, h2 = bi.forward_features(x), bi.forward_features(x2)
        assert (h1[:, 0] - h2[:, 0]).abs().max() > 1e-6          # first token depends on the end
        r1, r2 = fr.forward_frames(x), fr.forward_frames(x2)
        torch.testing.assert_close(r1[:, :24], r2[:, :24])      # causal: the past does not see the future


# ---- streaming == offline ---------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_streaming_final_prediction_equals_offline(pooling, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = FrameMamba(tiny("frame_mamba", pooling=pooling)).eval()
    wav = speechlike(12345, gen)
    with torch.no_grad():
        feats = model.features(wav, 16000)
        offline = model(feats.unsqueeze(0)).softmax(-1)[0]
        running = model.forward_frames(feats.unsqueeze(0)).softmax(-1)[0]      # (T, C)
    stream = StreamingClassifier(model)
    outs = stream.run(wav, chunk_ms=100.0)
    assert stream.frames == feats.shape[0]
    torch.testing.assert_close(outs[-1], offline, rtol=1e-4, atol=1e-5)
    # every intermediate prediction is the offline running prediction at that frame
    stream.reset()
    step, seen = 1600, 0
    for start in range(0, wav.numel(), step):
        p = stream.feed(wav[start:start + step], 16000)
        if stream.frames:
            torch.testing.assert_close(p, running[stream.frames - 1], rtol=1e-4, atol=1e-5)
            seen += 1
    assert seen >= 7
    # irregular chunk sizes give the same final answer, state stays the same size
    stream.reset()
    sizes = torch.randint(1, 3000, (100,), generator=gen).tolist()
    start, bytes_seen = 0, set()
    for s in sizes:
        if start >= wav.numel():
            break
        stream.feed(wav[start:start + s])
        start += s
        bytes_seen.add(stream.cache.state_bytes())
    stream.feed(wav[start:]) if start < wav.numel() else None
    torch.testing.assert_close(stream.feed(torch.zeros(0)), offline, rtol=1e-4, atol=1e-5)
    assert len(bytes_seen) == 1


def test_streaming_bad_input(seed):
    model = FrameMamba(tiny("frame_mamba"))
    stream = StreamingClassifier(model)
    with pytest.raises(ValueError, match="model's rate"):
        stream.feed(torch.randn(800), 8000)
    with pytest.raises(ValueError, match="mono"):
        stream.feed(torch.randn(2, 800))
    with pytest.raises(ValueError, match="NaN"):
        stream.feed(torch.full((800,), float("inf")))
    assert stream.feed(torch.randn(100)) is None  # less than one 25 ms window so far
    with pytest.raises(TypeError):
        StreamingClassifier(AudioMamba(tiny("audio_mamba")))


# ---- save / load --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["audio_mamba", "frame_mamba", "patch_transformer"])
def test_save_load_roundtrip(arch, tmp_path, seed):
    torch.manual_seed(seed)
    cfg = tiny(arch)
    cfg.frontend["mean"], cfg.frontend["std"] = -3.5, 2.5
    model = build_model(cfg).eval()
    model.save_pretrained(tmp_path / arch)
    loaded = load_model(tmp_path / arch)
    assert type(loaded) is type(model) and loaded.fbank.config.mean == -3.5
    x = torch.randn(2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


# ---- data ---------------------------------------------------------------------------------------
def test_read_audio_folder_csv_and_errors(tmp_path, seed):
    rng = np.random.default_rng(seed)
    write_wav(tmp_path / "yes_a.wav", rng.uniform(-0.5, 0.5, 800), 8000)
    write_wav(tmp_path / "no_b.wav", rng.uniform(-0.5, 0.5, 1600), 16000, channels=2)
    wav, rate = read_audio(tmp_path / "no_b.wav")
    assert wav.shape == (2, 800) and rate == 16000
    ds = AudioFolder(tmp_path)
    assert ds.classes == ["no", "yes"] and len(ds) == 2
    w, r, y = ds[1]
    assert r == 8000 and y == 1 and w.shape == (1, 800)
    (tmp_path / "labels.csv").write_text("filename,label\nyes_a.wav,up\nno_b.wav,down\n")
    ds2 = AudioFolder(tmp_path, labels="labels.csv")
    assert ds2.classes == ["down", "up"]
    (tmp_path / "bad_c.wav").write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(ValueError, match="cannot read"):
        read_audio(tmp_path / "bad_c.wav")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_audio(tmp_path / "missing.wav")
    with pytest.raises(FileNotFoundError):
        AudioFolder(tmp_path / "nope")


def test_speech_commands_layout(tmp_path, seed):
    rng = np.random.default_rng(seed)
    for label in ("yes", "no", "_background_noise_"):
        (tmp_path / label).mkdir()
        for i in range(3):
            write_wav(tmp_path / label / f"spk{i}_nohash_0.wav", rng.uniform(-0.5, 0.5, 400), 16000)
    (tmp_path / "validation_list.txt").write_text("yes/spk0_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/spk1_nohash_0.wav\nyes/spk1_nohash_0.wav\n")
    train = SpeechCommandsFolder(tmp_path, "training")
    test = SpeechCommandsFolder(tmp_path, "testing")
    assert len(train) == 3 and train.classes == ["no", "yes"]
    assert len(test) == 2 and sorted(y for _, _, y in (test[0], test[1])) == [0, 1]
    with pytest.raises(ValueError, match="split"):
        SpeechCommandsFolder(tmp_path, "train")
    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_list.txt"):
        SpeechCommandsFolder(tmp_path, "training")


def test_feature_dataset_mixup_targets(seed):
    torch.manual_seed(seed)
    feats = [torch.randn(int(n), 8) for n in torch.randint(5, 40, (6,))]
    fb = FbankConfig(num_mel_bins=8 * 16)  # any valid config; only mean/std are used here
    fb = FbankConfig(**{**fb.to_dict(), "mean": 0.5, "std": 2.0})
    ds = FeatureDataset(feats, [0, 1, 2, 0, 1, 2], fb, 20, 3, mixup=0.4)
    x, t = ds[0]
    assert x.shape == (20, 8) and t.shape == (3,) and math.isclose(float(t.sum()), 1.0, rel_tol=1e-6)
    plain = FeatureDataset(feats, [0, 1, 2, 0, 1, 2], fb, 20, 3)
    x, t = plain[1]
    assert t.item() == 1 and x.shape == (20, 8)
    logits = torch.randn(4, 3)
    hard = torch.tensor([0, 2, 1, 1])
    torch.testing.assert_close(classification_loss(logits, hard),
                               classification_loss(logits, torch.nn.functional.one_hot(hard, 3).float()))
