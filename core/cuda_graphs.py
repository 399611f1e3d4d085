"""CUDA-graph replay for inference: one launch of a captured graph instead of hundreds of kernels.

Small Mamba models are launch-bound on a GPU: a block issues a few dozen small kernels, and the
host takes longer to issue them than the GPU takes to run them (on an H100, Vim-Tiny at 224 px
spent 38.6 ms on the host for ~4 ms of GPU work; one decoding step of a 24-layer LM ~12 ms).
A CUDA graph records the kernels of one call once and replays them with a single launch.

* ``CUDAGraphModule(module)``: fixed-shape inference. The first call with a new input signature
  (shapes, dtypes, device, autocast state) captures a graph; later calls copy the inputs into the
  graph's static buffers and replay it. CPU tensors, calls that need gradients and non-tensor
  arguments run the module eagerly, so the wrapper is safe to leave on.
* ``DecodeGraph``: the one-token decoding step of a recurrent model on its cache (used by
  ``MambaLMHeadModel.generate``); the cache's states are updated in place by the replay.

A captured graph reads the parameters at their current addresses: in-place updates (an optimizer
step) are seen by the next replay, and moving or re-creating parameters (``.to(dtype)``,
``load_state_dict`` with ``assign=True``) makes both classes capture again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn as nn


def parameter_fingerprint(module: nn.Module) -> tuple:
    """Addresses, shapes and dtypes of the parameters and buffers: a captured graph is valid for
    as long as this does not change."""
    return tuple((t.data_ptr(), t.dtype, tuple(t.shape))
                 for t in (*module.parameters(), *module.buffers()))


def is_capturing() -> bool:
    """Whether the current CUDA stream is being captured (host syncs are not allowed then)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def _autocast_state(device_type: str) -> tuple:
    if not torch.is_autocast_enabled(device_type):
        return (False, None)
    return (True, torch.get_autocast_dtype(device_type))


def _warm_up_and_capture(fn: Callable[[], Any], warmup: int, pool) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Run ``fn`` ``warmup`` times on a side stream (compiles Triton kernels, creates cuBLAS
    handles), then capture one call; returns the graph and the call's static output."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        output = fn()
    return graph, output


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    output: Any


def _clone(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.clone()
    if isinstance(output, (tuple, list)):
        return type(output)(_clone(o) for o in output)
    if isinstance(output, dict):
        return {k: _clone(v) for k, v in output.items()}
    return output


class CUDAGraphModule(nn.Module):
    """Inference wrapper that replays a CUDA graph of ``module``'s forward per input signature.

    ``forward(*tensors)`` returns what ``module(*tensors)`` returns (tensors, or tuples/lists/dicts
    of them). Outputs are copies unless ``clone_outputs=False``, in which case they are the
    graph's static buffers, overwritten by the next call of the same signature. At most
    ``max_graphs`` signatures are kept (least recently used dropped). Falls back to eager
    execution for non-CUDA inputs, keyword arguments, or when autograd would record the call.
    """

    def __init__(self, module: nn.Module, warmup: int = 2, max_graphs: int = 8,
                 clone_outputs: bool = True) -> None:
        super().__init__()
        if warmup < 1:
            raise ValueError(f"warmup: expected >= 1 un-captured calls before capture, got {warmup}")
        if max_graphs < 1:
            raise ValueError(f"max_graphs: expected >= 1, got {max_graphs}")
        self.module = module
        self.warmup, self.max_graphs, self.clone_outputs = warmup, max_graphs, clone_outputs
        self._graphs: dict[tuple, _Captured] = {}
        self._fingerprint: Optional[tuple] = None
        self._pool = None

    def _eager(self, args, kwargs) -> bool:
        if kwargs or not args or not all(isinstance(a, torch.Tensor) for a in args):
            return True
        if not all(a.is_cuda for a in args) or is_capturing():
            return True
        return torch.is_grad_enabled() and (any(a.requires_grad for a in args)
                                            or any(p.requires_grad for p in self.module.parameters()))

    def forward(self, *args: torch.Tensor, **kwargs: Any) -> Any:
        if self._eager(args, kwargs):
            return self.module(*args, **kwargs)
        fingerprint = parameter_fingerprint(self.module)
        if fingerprint != self._fingerprint:
            self.reset()
            self._fingerprint = fingerprint
        key = (tuple((tuple(a.shape), a.dtype, a.device) for a in args), _autocast_state("cuda"),
               torch.is_inference_mode_enabled(), self.module.training)
        entry = self._graphs.pop(key, None)
        if entry is None:
            entry = self._capture(args)
        self._graphs[key] = entry                                  # most recently used last
        while len(self._graphs) > self.max_graphs:
            self._graphs.pop(next(iter(self._graphs)))
        for static, a in zip(entry.inputs, args):
            static.copy_(a)
        entry.graph.replay()
        return _clone(entry.output) if self.clone_outputs else entry.output

    def _capture(self, args: tuple[torch.Tensor, ...]) -> _Captured:
        inputs = tuple(a.detach().clone() for a in args)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph, output = _warm_up_and_capture(lambda: self.module(*inputs), self.warmup, self._pool)
        return _Captured(graph, inputs, output)

    def reset(self) -> None:
        """Drop every captured graph (they are captured again on the next calls)."""
        self._graphs.clear()
        self._fingerprint = None
        self._pool = None          # a memory pool whose graphs are all gone cannot take new captures

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)


class DecodeGraph:
    """A captured one-token decoding step: ``step_fn(token (B, 1)) -> logits (B, V)`` on a cache
    whose states it updates in place.

    Capture runs the step a few times, which advances the cache's states: call
    ``cache.reset(...)`` (zeroes them) after constructing, before the prefill.
    """

    def __init__(self, step_fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int,
                 device: torch.device, warmup: int = 2) -> None:
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.graph, self.logits = _warm_up_and_capture(lambda: step_fn(self.token), warmup, None)

    def __call__(self, token: torch.Tensor) -> torch.Tensor:
        """``token (B, 1)`` -> logits ``(B, V)`` (the graph's static buffer: read it before the
        next call)."""
        self.token.copy_(token)
        self.graph.replay()
        return self.logits
