"""The CPU scan is a torch.library custom op: opcheck passes and torch.compile(fullgraph=True)
compiles a whole model with the same outputs and gradients as eager mode."""
import torch

import mambakit
from mambakit.ops import selective_scan_cpu


def test_cpu_scan_custom_op_passes_opcheck(seed):
    batch, dim, length, n = 2, 6, 70, 4

    def t(*shape):
        return torch.randn(*shape, requires_grad=True)

    args = (t(batch, dim, length), t(batch, dim, length), (-torch.rand(dim, n)).requires_grad_(),
            t(batch, 2, n, length), t(batch, 2, n, length), t(dim), t(batch, dim, length), t(dim),
            t(batch, dim, n), None, True)
    result = torch.library.opcheck(selective_scan_cpu._fwd_op, args)
    assert all(v == "SUCCESS" for v in result.values()), result


def test_backbone_compiles_full_graph(seed):
    model = mambakit.MambaBackbone(d_model=16, n_layer=1, ssm_cfg={"d_state": 4})
    x = torch.randn(2, 24, 16, requires_grad=True)
    eager = model(x)
    (g_eager,) = torch.autograd.grad(eager.square().sum(), x)
    compiled = torch.compile(model, fullgraph=True)(x)
    (g_compiled,) = torch.autograd.grad(compiled.square().sum(), x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_compiled, g_eager, rtol=1e-5, atol=1e-5)
