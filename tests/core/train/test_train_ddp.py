"""DDP under torchrun (gloo, CPU): 2 processes and 1 process, same global batch, same weights."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from _train_ddp_worker import run
from _train_helpers import max_abs_diff, state_of

WORKER = Path(__file__).with_name("_train_ddp_worker.py")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed with gloo needed")
def test_two_process_ddp_matches_one_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    model, single = run(str(tmp_path / "single"))   # one process, same global batch (8 = 1 x 2 x 4)
    ddp_weights = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-00000006" / "model.safetensors"))
    mine = state_of(model)
    assert max_abs_diff({k: mine[k] for k in ddp_weights}, ddp_weights) < 1e-5
    # evaluation metrics are reduced over both processes (13 eval samples: shards of 7 and 6)
    ddp_metrics = json.loads((tmp_path / "ddp" / "final_metrics.json").read_text())
    assert ddp_metrics == pytest.approx(single.final_metrics, abs=1e-5)
    # only rank 0 wrote: one history, with one record per event
    records = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "eval"] == [3, 6]
    assert torch.isfinite(torch.tensor([r["loss"] for r in records])).all()


def test_ddp_time_budget_stops_every_process_at_the_same_step(tmp_path):
    # the ranks run at different speeds; the smallest estimate must win on both, or they deadlock
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    out = tmp_path / "budget"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), str(out), "budget"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [int((out / f"steps_rank{r}.txt").read_text()) for r in (0, 1)]
    assert steps[0] == steps[1] and 30 <= steps[0] < 100_000, steps
