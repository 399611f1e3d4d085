"""Mamba-1 layers pad the sequence to aligned rows where the Triton scan reads it: the outputs and
gradients at the real positions are those of the unpadded layer, and the scan's launcher copies
none of its inputs (the backward only the output gradient, which out_proj hands over transposed)."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import mambakit.modules.mamba as mamba_module
from mambakit.modules.mamba import Mamba
from mambakit.ops.time_layout import TIME_ALIGN, padded_length, scan_time_multiple


def test_time_multiple_by_device_and_impl(monkeypatch):
    x = torch.zeros(1, 3, 4)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert scan_time_multiple(x, "auto") == 1 and scan_time_multiple(x, "triton") == 1
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert scan_time_multiple(x, "triton") == TIME_ALIGN
    assert scan_time_multiple(x, "auto") == 1 and scan_time_multiple(x, "reference") == 1
    assert [padded_length(n, 16) for n in (1, 16, 17, 197)] == [16, 16, 32, 208]


@pytest.mark.parametrize("packed", [False, True])
def test_padded_mamba_equals_unpadded(monkeypatch, seed, packed):
    torch.manual_seed(seed)
    layer = Mamba(12, d_state=4, d_conv=3, expand=2, impl="reference").double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 11, 12, dtype=torch.float64, requires_grad=True)
    seq_idx = torch.sort(torch.randint(0, 3, (3, 11)), -1).values if packed else None
    g = torch.randn(3, 11, 12, dtype=torch.float64)
    res = []
    for multiple in (1, 16):
        monkeypatch.setattr(mamba_module, "scan_time_multiple", lambda t, impl, m=multiple: m)
        y = layer(x, seq_idx=seq_idx)
        assert y.shape == x.shape and y.is_contiguous()
        res.append([y, *torch.autograd.grad(y, [x, *layer.parameters()], g)])
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops.time_layout import record_layout_copies
    from mambakit.modules.mamba import Mamba
    torch.manual_seed(int(sys.argv[1]))
    fast = Mamba(8, d_state=4, d_conv=3, expand=2, impl="triton")
    ref = Mamba(8, d_state=4, d_conv=3, expand=2, impl="reference")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 9, 8, requires_grad=True)
    g = torch.randn(2, 9, 8)
    res = []
    for m in (fast, ref):
        with record_layout_copies() as copies:
            y = m(x)
        if m is fast:
            assert not copies, f"the forward scan copied inputs with unaligned rows: {copies}"
        with record_layout_copies() as copies:
            res.append([y, *torch.autograd.grad(y, [x, *m.parameters()], g)])
        if m is fast:   # only the output gradient, which arrives token-major from out_proj
            assert copies == [(2, 16, 16)], f"the backward scan copied {copies}"
    print(max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*res)))
""")


def test_padded_mamba_on_triton_copies_nothing():
    pytest.importorskip("triton")
    seed = int.from_bytes(os.urandom(2), "little")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed)], env=dict(os.environ, TRITON_INTERPRET="1"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    worst = float(out.stdout.strip().splitlines()[-1])
    assert worst < 1e-4, f"seed {seed}: max relative difference {worst}"
