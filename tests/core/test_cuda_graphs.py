"""CUDA-graph replay: the graphed module and graphed decoding compute what eager execution does.

On a machine without a GPU only the fallbacks and errors are checked; the GPU tests run where
CUDA is available (the device machine).
"""
import pytest
import torch

import mambakit
from mambakit.cuda_graphs import CUDAGraphModule

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _lm(layer: str, device: str = "cpu") -> mambakit.MambaLMHeadModel:
    ssm_cfg = {"layer": layer, "d_state": 16}
    if layer == "Mamba2":
        ssm_cfg.update(headdim=16, chunk_size=32)
    return mambakit.MambaLMHeadModel(d_model=64, n_layer=3, vocab_size=37, ssm_cfg=ssm_cfg).to(device).eval()


def test_graphed_module_runs_cpu_inputs_eagerly(seed):
    torch.manual_seed(seed)
    backbone = mambakit.MambaBackbone(d_model=32, n_layer=2, ssm_cfg={"d_state": 8}).eval()
    graphed = CUDAGraphModule(backbone)
    x = torch.randn(2, 20, 32)
    with torch.no_grad():
        torch.testing.assert_close(graphed(x), backbone(x), rtol=0, atol=0)
    assert graphed.num_graphs == 0


def test_graphed_module_and_generate_refuse_bad_settings():
    with pytest.raises(ValueError, match="warmup"):
        CUDAGraphModule(torch.nn.Linear(2, 2), warmup=0)
    with pytest.raises(ValueError, match="max_graphs"):
        CUDAGraphModule(torch.nn.Linear(2, 2), max_graphs=0)
    with pytest.raises(ValueError, match="CUDA"):
        _lm("Mamba1").generate(torch.zeros(1, 3, dtype=torch.long), max_new_tokens=2, cuda_graph=True)


@cuda
def test_graphed_backbone_matches_eager_and_recaptures_when_needed(seed):
    torch.manual_seed(seed)
    backbone = mambakit.MambaBackbone(d_model=64, n_layer=2, ssm_cfg={"d_state": 16},
                                      scan_orders=["bidirectional"]).cuda().eval()
    graphed = CUDAGraphModule(backbone, max_graphs=2)
    with torch.no_grad():
        for length in (50, 50, 300):
            x = torch.randn(3, length, 64, device="cuda")         # new values each call
            torch.testing.assert_close(graphed(x), backbone(x), rtol=1e-5, atol=1e-5)
        assert graphed.num_graphs == 2                             # one per shape
        with torch.autocast("cuda", dtype=torch.bfloat16):
            x = torch.randn(3, 50, 64, device="cuda")
            torch.testing.assert_close(graphed(x), backbone(x), rtol=0, atol=0)
        assert graphed.num_graphs == 2                             # least recently used dropped
        backbone.to(torch.float64)                                 # new parameter storage
        x = torch.randn(3, 50, 64, device="cuda", dtype=torch.float64)
        torch.testing.assert_close(graphed(x), backbone(x), rtol=1e-10, atol=1e-10)
    x = torch.randn(3, 50, 64, device="cuda", dtype=torch.float64, requires_grad=True)
    graphed(x).sum().backward()                                    # needs autograd: runs eagerly
    assert x.grad is not None


@cuda
@pytest.mark.parametrize("layer", ["Mamba1", "Mamba2"])
def test_graphed_generation_gives_the_eager_tokens(layer, seed):
    torch.manual_seed(seed)
    model = _lm(layer, "cuda")
    prompt = torch.randint(0, 37, (2, 11), device="cuda")
    eager = model.generate(prompt, max_new_tokens=20, cuda_graph=False)
    graphed = model.generate(prompt, max_new_tokens=20, cuda_graph=True)
    again = model.generate(prompt, max_new_tokens=20, cuda_graph=True)     # reuses the graph and cache
    assert torch.equal(graphed, eager) and torch.equal(again, eager)
    gen = torch.Generator(device="cuda")
    sampled = [model.generate(prompt, max_new_tokens=20, top_k=5, generator=gen.manual_seed(seed), cuda_graph=g)
               for g in (False, True)]
    assert torch.equal(sampled[0], sampled[1])


@cuda
def test_triton_conv1d_on_gpu_matches_the_float64_reference(seed):
    from mambakit.ops.conv1d import causal_conv1d

    torch.manual_seed(seed)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 1e-2)):
        for layout in ("bdl", "bld"):
            x = torch.randn(3, 1000, 300, device="cuda") if layout == "bld" else torch.randn(3, 300, 1000, device="cuda")
            x = (x.transpose(1, 2) if layout == "bld" else x).to(dtype).requires_grad_()
            w = torch.randn(300, 4, device="cuda", requires_grad=True)
            b = torch.randn(300, device="cuda", requires_grad=True)
            h0 = torch.randn(3, 300, 3, device="cuda", dtype=dtype, requires_grad=True)
            seq = (torch.arange(1000, device="cuda") >= 400).int().expand(3, -1).contiguous()
            g = torch.randn(3, 300, 1000, device="cuda", dtype=torch.float64)
            outs = []
            for impl, cast in (("triton", dtype), ("reference", torch.float64)):
                args = [t.detach().to(cast).requires_grad_() for t in (x, w, b, h0)]
                out = causal_conv1d(args[0], args[1], args[2], "silu", initial_state=args[3], seq_idx=seq, impl=impl)
                grads = torch.autograd.grad((out.double() * g).sum(), args)
                outs.append((out, *grads))
            for a, r in zip(*outs):
                err = float((a.double() - r).norm() / r.norm())
                assert err < tol, (dtype, layout, err)
