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


class RankSlowLoss:
    """``ce_loss`` that sleeps longer on rank 1, so the ranks measure different speeds."""

    def __init__(self) -> None:
        self.seconds = 0.005 * (1 + 3 * int(os.environ.get("RANK", "0")))

    def __call__(self, logits, y):
        import time
        time.sleep(self.seconds)
        return ce_loss(logits, y)


def run_budget(output_dir: str):
    config = tiny_config(output_dir, max_steps=100_000, batch_size=8, time_budget_min=4.0 / 60)
    result = fit(make_model(), TokenClassData(40), loss_fn=RankSlowLoss(), config=config)
    Path(output_dir, f"steps_rank{os.environ.get('RANK', '0')}.txt").write_text(str(result.step))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[2] == "budget":
        run_budget(sys.argv[1])
        sys.exit(0)
    model, result = run(sys.argv[1])
    if int(os.environ.get("RANK", "0")) == 0:
        Path(sys.argv[1], "final_metrics.json").write_text(json.dumps(result.final_metrics))
