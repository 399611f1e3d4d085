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

Hyper-parameter search on the validation split only (the test split is never read): every
config of a JSON grid (``{"model": {...lists...}, "optim": {...}, "epochs": [...]}``; each key
takes a list of values, the grid is their product) is trained on every dataset x horizon, and
the best validation MSE over epochs is recorded; configs are ranked by their mean over the
settings. ``--jobs`` runs that many trainings at once (one process each; small models share a GPU):

    python benchmarks/timeseries.py search --model patchmamba --grid grid.json --jobs 8 --json search.json

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


def _grid_points(grid: dict) -> list[dict]:
    """``{"model": {"d_model": [32, 64]}, "epochs": [4, 8]}`` -> every combination, as
    ``[{"model": {"d_model": 32}, "epochs": 4}, ...]``."""
    import itertools

    axes = []
    for section, values in grid.items():
        if isinstance(values, dict):
            axes += [((section, key), list(v) if isinstance(v, list) else [v]) for key, v in values.items()]
        else:
            axes.append(((section, None), list(values) if isinstance(values, list) else [values]))
    points = []
    for combo in itertools.product(*[v for _, v in axes]):
        point: dict = {}
        for ((section, key), _), value in zip(axes, combo):
            if key is None:
                point[section] = value
            else:
                point.setdefault(section, {})[key] = value
        points.append(point)
    return points


def _search_one(job: tuple) -> dict:
    """Train one (dataset, horizon, config) on train, select on validation; never reads test."""
    import tempfile
    import time

    from mambakit.timeseries.metrics import forecast_loss, forecast_metrics
    from mambakit.timeseries.recipes import build_datasets, build_model, default_config

    dataset, horizon, model_name, point, seed, device = job
    config = default_config(dataset, model_name, horizon)
    config.model.update(point.get("model", {}))
    config.data.update(point.get("data", {}))
    for key, value in point.get("optim", {}).items():
        setattr(config.optim, key, value)
    config.epochs = int(point.get("epochs", 2 * config.epochs))
    for key, value in point.items():      # other top-level TrainConfig fields, e.g. batch_size
        if key not in ("model", "optim", "data", "epochs"):
            if not hasattr(config, key):
                raise ValueError(f"grid key {key!r} is not a TrainConfig field")
            setattr(config, key, value)
    if device != "cpu":
        torch.set_num_threads(1)          # many runs share the machine: one CPU thread each
    config.seed, config.quiet, config.device = seed, True, device
    sets = build_datasets(config.data)
    metrics = forecast_metrics(sets["train"].scaler, sets["train"].out_index)
    torch.manual_seed(seed)
    model = build_model(config.model, sets)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        config.output_dir = tmp
        from mambakit.train import fit

        result = fit(model, sets["train"], sets["val"], loss_fn=forecast_loss, metrics=metrics, config=config)
    evals = [r for r in result.history if r.get("split") == "eval"]
    best = min(evals, key=lambda r: r["mse"])
    return {"dataset": dataset, "horizon": horizon, "model": model_name, "point": point, "seed": seed,
            "val_mse": best["mse"], "val_mae": best.get("mae"), "best_epoch": best.get("epoch"),
            "val_mse_per_eval": [round(r["mse"], 5) for r in evals],
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - started, 1)}


def _search_record(args, grid: dict, points: list[dict], rows: list[dict], device: str) -> dict:
    import statistics

    ranking = []
    for point in points:
        mine = [r for r in rows if r["point"] == point]
        per_dataset = {d: statistics.fmean(r["val_mse"] for r in mine if r["dataset"] == d)
                       for d in args.datasets if any(r["dataset"] == d for r in mine)}
        complete = len(mine) == len(args.datasets) * len(args.horizons)
        ranking.append({"point": point, "complete": complete, "mean_val_mse": per_dataset,
                        "val_mse": {f"{r['dataset']}-h{r['horizon']}": round(r["val_mse"], 5) for r in mine}})
    return {"name": "timeseries_search", "model": args.model, "grid": grid, "selection": "validation split only",
            "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
            "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "ranking": ranking, "runs": rows}


def cmd_search(args) -> int:
    import concurrent.futures as cf
    import multiprocessing as mp

    grid = json.loads(Path(args.grid).read_text()) if Path(args.grid).is_file() else json.loads(args.grid)
    points = _grid_points(grid)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    jobs = [(d, h, args.model, p, args.seed, device) for p in points for d in args.datasets for h in args.horizons]
    print(f"{len(points)} configs x {len(args.datasets) * len(args.horizons)} settings = {len(jobs)} runs "
          f"on {device}, {args.jobs} at a time", flush=True)
    rows: list[dict] = []
    with cf.ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
        for future in cf.as_completed([pool.submit(_search_one, job) for job in jobs]):
            row = future.result()
            rows.append(row)
            print(f"{row['dataset']} h{row['horizon']:<4} val mse {row['val_mse']:.4f}  {row['seconds']:6.1f} s  "
                  f"{json.dumps(row['point'], sort_keys=True)}", flush=True)
            record = _search_record(args, grid, points, rows, device)
            if args.json:   # rewritten after every run: a run cut short keeps what finished
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    ranking = record["ranking"]
    for d in args.datasets:
        print(f"\n{d}: configs by mean validation MSE over horizons {args.horizons}")
        done = [r for r in ranking if r["complete"]]
        for r in sorted(done, key=lambda r: r["mean_val_mse"][d])[:args.top]:
            print(f"  {r['mean_val_mse'][d]:.4f}  {json.dumps(r['point'], sort_keys=True)}")
    return 0


def cmd_plot(args) -> int:
    from mambakit.train import TrainConfig
    from mambakit.train import checkpoint as ckpt
    from mambakit.timeseries.plots import plot_forecasts
    from mambakit.timeseries.recipes import build_datasets, build_model

    run = Path(args.run)
    config = TrainConfig.load(run / "train_config.json")
    sets = build_datasets(config.data)
    models, kinds = {}, set()
    for label, folder, model_cfg in [(config.model["name"], run, config.model)] + [
            (b, run / "baselines" / b, TrainConfig.load(run / "baselines" / b / "train_config.json").model)
            for b in config.data.get("baselines", []) if (run / "baselines" / b / "train_config.json").is_file()]:
        best = folder / "checkpoints" / ckpt.BEST          # what the recorded test metrics used
        weights = best if (best / ckpt.WEIGHTS).is_file() else ckpt.latest_checkpoint(folder / "checkpoints")
        if weights is None:
            raise FileNotFoundError(f"no checkpoint in {folder / 'checkpoints'}")
        kinds.add("best-on-validation" if weights == best else "last-step")
        model = build_model(model_cfg, sets)
        ckpt.load_weights(weights, model)
        models[label] = model
    test = sets["test"]
    path = plot_forecasts(models, test, args.png, variable=args.variable,
                          title=f"{test.name}, horizon {test.pred_len}: test-split forecasts of {args.variable} "
                                f"({' / '.join(sorted(kinds))} weights)")
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
    search = sub.add_parser("search", help="grid search on the validation split (test never read)")
    search.add_argument("--model", default="patchmamba", choices=["smamba", "patchmamba", "dlinear", "patchtst"])
    search.add_argument("--grid", required=True, help="JSON file or string: lists of values per config key")
    search.add_argument("--datasets", nargs="+", default=["etth1", "etth2"])
    search.add_argument("--horizons", nargs="+", type=int, default=[96, 192, 336, 720])
    search.add_argument("--jobs", type=int, default=1, help="trainings at once (processes)")
    search.add_argument("--seed", type=int, default=2021)
    search.add_argument("--device", default=None)
    search.add_argument("--top", type=int, default=8)
    search.add_argument("--json", default=None, help="write every run and the ranking here")
    plot = sub.add_parser("plot", help="forecast-vs-truth PNG from a finished run folder")
    plot.add_argument("run", help="run folder (runs/<recipe>) holding train_config.json and checkpoints/")
    plot.add_argument("--png", required=True)
    plot.add_argument("--variable", default="OT")
    args = ap.parse_args(argv)
    if args.command == "recipes":
        return cmd_recipes(args)
    if args.command == "plot":
        return cmd_plot(args)
    if args.command == "search":
        return cmd_search(args)
    return cmd_speed(args)


if __name__ == "__main__":
    sys.exit(main())
