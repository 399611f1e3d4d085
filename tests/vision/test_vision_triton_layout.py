"""Vim's bidirectional mixer on the Triton path (CPU interpreter): the sequence is padded to aligned
rows, so the scan's launcher copies none of its inputs, forward or backward, and the result equals
the reference path's."""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    os.environ["TRITON_INTERPRET"] = "1"
    from mambakit.ops.time_layout import record_layout_copies
    from mambakit.vision import MultiOrderMamba, bidirectional_orders
    torch.manual_seed(int(sys.argv[1]))
    flip_tokens = sys.argv[2] == "1"
    d, length = 8, 9
    fast = MultiOrderMamba(d, bidirectional_orders(), d_state=4, d_conv=3, expand=2, impl="triton")
    fast.flip_tokens = flip_tokens
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref = MultiOrderMamba(d, bidirectional_orders(), d_state=4, d_conv=3, expand=2, impl="reference")
    ref.load_state_dict(fast.state_dict())
    ref.time_align = 1
    x = torch.randn(2, length, d, requires_grad=True)
    g = torch.randn(2, length, d)
    res = []
    with record_layout_copies() as copies:
        for m in (fast, ref):
            y = m(x)
            res.append([y, *torch.autograd.grad(y, [x, *m.parameters()], g)])
    assert not copies, f"the scan copied inputs with unaligned rows: {copies}"
    print(max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(*res)))
""")


@pytest.mark.parametrize("flip_tokens", [False, True])
def test_padded_bidirectional_mixer_on_triton_copies_nothing(flip_tokens):
    seed = int.from_bytes(os.urandom(2), "little")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(seed), str(int(flip_tokens))],
                         env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    worst = float(out.stdout.strip().splitlines()[-1])
    assert worst < 1e-4, f"seed {seed}: max relative difference {worst}"
