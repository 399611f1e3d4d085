"""Run by the DDP test under ``torchrun``: the tiny training run, then rank 0 keeps the weights.

usage: python -m torch.distributed.run --nproc_per_node N _train_ddp_worker.py OUTPUT_DIR
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _train_helpers import TokenClassData, ce_loss, make_model, tiny_config  # noqa: E402

from mambakit.train import fit  # noqa: E402


def run(output_dir: str):
    model = make_model()
    config = tiny_config(output_dir, max_steps=6, batch_size=8, grad_accum=2, eval_every=3, ema_decay=0.9)
    result = fit(model, TokenClassData(40), TokenClassData(13, seed=1), loss_fn=ce_loss,
                 metrics=["accuracy", "roc_auc"], config=config)
    return model, result


if __name__ == "__main__":
    model, result = run(sys.argv[1])
    if int(os.environ.get("RANK", "0")) == 0:
        Path(sys.argv[1], "final_metrics.json").write_text(json.dumps(result.final_metrics))
