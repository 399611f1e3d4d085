"""Time-series benchmarks: model speed, the ETTh recipes in one command, and forecast plots.

Speed (default): forward and forward+backward latency of the forecasters (S-Mamba style
``smamba``, ``patchmamba``, the ``patchtst`` and ``dlinear`` baselines) at the recipe sizes, on
batches of look-back 96 with 7 variables (ETT) and 321 variables (Electricity-sized), horizons
96 and 720. Timing: ``triton.testing.do_bench`` (median) on CUDA, else the median of ``--reps``
wall-clock runs. Writes ``timeseries_<device>.json`` to ``--out`` and prints a table.

    PYTHONPATH=<dir that maps mambakit> python benchmarks/timeseries.py --out benchmarks/results
    python benchmarks/timeseries.py --cpu-smoke --out /tmp/ts_bench          # tiny, on CPU

Recipes (every dataset x horizon of one model, each recorded with ``--record``):

    python benchmarks/timeseries.py recipes --model smamba --datasets etth1 etth2 --horizons 96 192 336 720

Plot of forecasts vs truth on the test split, from a finished run folder (the model and the
baselines it trained):

    python benchmarks/timeseries.py plot runs/etth1-smamba-h96 --png benchmarks/results/recipes/etth1-smamba-h96.png
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402

SPEED_MODELS = ("smamba", "patchmamba", "patchtst", "dlinear")


def _bench(fn, device: torch.device, reps: int) -> float:
    """Median milliseconds of ``fn()``."""
    return median_ms(fn, device.type, reps, warmup_ms=max(1, reps // 4), rep_ms=max(50, reps * 20))


def cmd_speed(args) -> int:
    from mambakit.timeseries.models import create_model
    from mambakit.timeseries.recipes import MODEL_DEFAULTS

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu_smoke else "cpu")
    if args.cpu_smoke:
        cases = [dict(batch=4, seq_len=96, n_vars=3, pred_len=24)]
        shrink = dict(d_model=16, n_layer=1, d_intermediate=0, d_ff=32)
    else:
        cases = [dict(batch=32, seq_len=96, n_vars=c, pred_len=h) for c in (7, 321) for h in (96, 720)]
        shrink = {}
    rows = []
    for case in cases:
        for name in SPEED_MODELS:
            opts = {**MODEL_DEFAULTS[name][0], **{k: v for k, v in shrink.items() if k in MODEL_DEFAULTS[name][0]
                                                  or k in ("d_model", "n_layer")}}
            if name == "dlinear":
                opts = dict(MODEL_DEFAULTS[name][0])
            torch.manual_seed(0)
            model = create_model(name, seq_len=case["seq_len"], pred_len=case["pred_len"], n_vars=case["n_vars"],
                                 **opts).to(device)
            x = torch.randn(case["batch"], case["seq_len"], case["n_vars"], device=device)

            def fwd():
                with torch.no_grad():
                    model(x)

            def fwd_bwd():
                model.zero_grad(set_to_none=True)
                model(x).float().pow(2).mean().backward()

            model.train()
            t_train = _bench(fwd_bwd, device, args.reps)
            model.eval()
            t_eval = _bench(fwd, device, args.reps)
            rows.append({**case, "model": name, "parameters": sum(p.numel() for p in model.parameters()),
                         "forward_ms": round(t_eval, 4), "forward_backward_ms": round(t_train, 4)})
            print(f"{name:<11} B={case['batch']:<3} L={case['seq_len']} C={case['n_vars']:<4} H={case['pred_len']:<4} "
                  f"params={rows[-1]['parameters']:>9,}  fwd {t_eval:9.3f} ms  fwd+bwd {t_train:9.3f} ms", flush=True)
    tag = (torch.cuda.get_device_name(device).replace(" ", "_").lower() if device.type == "cuda" else "cpu")
    tag += "_smoke" if args.cpu_smoke else ""
    record = {"name": "timeseries_speed", "device": tag, "timing": "do_bench median" if device.type == "cuda"
              else f"median of {args.reps} wall-clock runs", "rows": rows,
              "machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
              "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
              "command": " ".join([sys.executable, *sys.argv])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"timeseries_{tag}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n| model | B | L | C | H | params | forward ms | fwd+bwd ms |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['seq_len']} | {r['n_vars']} | {r['pred_len']} | {r['parameters']:,} "
              f"| {r['forward_ms']:.3f} | {r['forward_backward_ms']:.3f} |")
    print(f"wrote {path}")
    return 0


def cmd_recipes(args) -> int:
    failed = []
    for dataset in args.datasets:
        for horizon in args.horizons:
            name = f"{dataset}-{args.model}-h{horizon}"
            cmd = [sys.executable, "-m", "mambakit.cli", "train", "timeseries", name, "-q", "--record",
                   *[f"--set={s}" for s in args.set]]
            print("$", " ".join(cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                failed.append(name)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


def cmd_plot(args) -> int:
    from mambakit.train import TrainConfig
    from mambakit.train import checkpoint as ckpt
    from mambakit.timeseries.plots import plot_forecasts
    from mambakit.timeseries.recipes import build_datasets, build_model

    run = Path(args.run)
    config = TrainConfig.load(run / "train_config.json")
    sets = build_datasets(config.data)
    models = {}
    for label, folder, model_cfg in [(config.model["name"], run, config.model)] + [
            (b, run / "baselines" / b, TrainConfig.load(run / "baselines" / b / "train_config.json").model)
            for b in config.data.get("baselines", []) if (run / "baselines" / b / "train_config.json").is_file()]:
        weights = ckpt.latest_checkpoint(folder / "checkpoints")
        if weights is None:
            raise FileNotFoundError(f"no checkpoint in {folder / 'checkpoints'}")
        model = build_model(model_cfg, sets)
        ckpt.load_weights(weights, model)
        models[label] = model
    path = plot_forecasts(models, sets["test"], args.png, variable=args.variable,
                          title=f"{run.name}: test-split forecasts of {args.variable} (last-step weights)")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command")
    ap.add_argument("--out", default="benchmarks/results", help="folder for timeseries_<device>.json")
    ap.add_argument("--reps", type=int, default=20, help="timed repetitions (CPU) / do_bench scale")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on CPU (checks the script runs)")
    rec = sub.add_parser("recipes", help="run the ETTh recipes of one model, each with --record")
    rec.add_argument("--model", default="smamba", choices=["smamba", "patchmamba", "dlinear", "patchtst"])
    rec.add_argument("--datasets", nargs="+", default=["etth1", "etth2"])
    rec.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    rec.add_argument("--set", action="append", default=[], help="config override passed to every run")
    plot = sub.add_parser("plot", help="forecast-vs-truth PNG from a finished run folder")
    plot.add_argument("run", help="run folder (runs/<recipe>) holding train_config.json and checkpoints/")
    plot.add_argument("--png", required=True)
    plot.add_argument("--variable", default="OT")
    args = ap.parse_args(argv)
    if args.command == "recipes":
        return cmd_recipes(args)
    if args.command == "plot":
        return cmd_plot(args)
    return cmd_speed(args)


if __name__ == "__main__":
    sys.exit(main())
