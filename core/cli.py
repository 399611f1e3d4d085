"""The ``mambakit`` command line: train, eval, recipes, bench, tables, demo.

    mambakit train core klebsiella-lm-tiny --set max_steps=100 --set optim.lr=3e-4
    mambakit train core runs/klebsiella-lm-tiny/train_config.json --resume
    mambakit eval core klebsiella-lm-tiny --checkpoint runs/klebsiella-lm-tiny/checkpoints/best
    torchrun --standalone --nproc_per_node 2 -m mambakit.cli train core klebsiella-lm-tiny

Every run setting is a ``TrainConfig`` field, changed with ``--set key=value`` (repeatable;
dotted keys reach sections: ``optim.lr``, ``model.d_model``, ``data.seq_len``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

EXIT_ERROR = 2
EXIT_NONFINITE = 3


def _config_help() -> str:
    from .train.config import describe_fields
    rows = describe_fields()
    width = max(len(k) for k, _, _ in rows)
    lines = ["configuration keys (--set KEY=VALUE; defaults shown are the engine's, a recipe sets its own):"]
    for key, default, help_text in rows:
        lines.append(f"  {key:<{width}}  {help_text} [default {default}]")
    lines.append("  model.*, data.*        recipe options; see them with --show-config")
    return "\n".join(lines)


TRAIN_EPILOG = """\
values: numbers as usual, booleans true/false, lists and dicts as JSON (--set 'optim.betas=[0.9,0.99]'),
'none' for optional fields. The resolved config is saved as <output_dir>/train_config.json and in every
checkpoint; pass that file instead of a recipe name to run it again.

outputs in <output_dir>: metrics.jsonl (one JSON record per log/eval), train_config.json,
checkpoints/step-XXXXXXXX/ (the last keep_last) and checkpoints/best/ (load it with
MambaLMHeadModel.from_pretrained or `mambakit eval --checkpoint`).

several GPUs or nodes: launch with PyTorch's torchrun, e.g.
  torchrun --standalone --nproc_per_node 2 -m mambakit.cli train core klebsiella-lm-tiny
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
      -m mambakit.cli train core klebsiella-lm-tiny
batch_size is the global batch, so the same config trains the same way on any number of processes.
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", help="core, vision, audio, genomics, timeseries or graphs")
    p.add_argument("recipe", help="recipe name (newest version), NAME@VERSION, or a saved train_config.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable), e.g. --set optim.lr=3e-4 --set max_steps=100")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="plain log lines instead of a progress bar (same as --set quiet=true)")
    p.add_argument("--show-config", action="store_true", help="print the resolved config as JSON and exit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mambakit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Selective state space models (Mamba-1, Mamba-2) for every domain: train, evaluate, "
                    "benchmark, demo.",
        epilog="run `mambakit COMMAND --help` for the options of each command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="train a recipe (or a saved config)",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Train a registered recipe of a domain, or re-run a saved train_config.json.",
                           epilog=TRAIN_EPILOG + "\n" + _config_help())
    _add_config_args(train)
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue the run in output_dir from its latest checkpoint (or from CHECKPOINT, a "
                            "checkpoints/step-* folder); without a checkpoint there it starts fresh")
    train.add_argument("--record", nargs="?", const="", default=None, metavar="PATH",
                       help="write the result (metrics, baseline, machine, date, git commit, command) as JSON to "
                            "PATH (default benchmarks/results/recipes/<recipe>.json)")

    ev = sub.add_parser("eval", help="evaluate a checkpoint on a recipe's evaluation set",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Evaluate saved weights on the evaluation set a recipe builds.",
                        epilog="the checkpoint defaults to <output_dir>/checkpoints/best, else the latest step "
                               "checkpoint.\n\n" + _config_help())
    _add_config_args(ev)
    ev.add_argument("--checkpoint", default=None, metavar="DIR",
                    help="folder with model.safetensors (checkpoints/best or checkpoints/step-*)")
    ev.add_argument("--output", default=None, metavar="FILE", help="also write the metrics as JSON to FILE")

    rec = sub.add_parser("recipes", help="list the registered recipes")
    rec.add_argument("domain", nargs="?", default=None, help="only this domain")

    bench = sub.add_parser("bench", help="list or run the speed benchmarks in benchmarks/",
                           description="Without NAME: list the scripts in the checkout's benchmarks/ folder. "
                                       "With NAME: run benchmarks/NAME.py with the remaining arguments.")
    bench.add_argument("name", nargs="?", default=None, help="benchmark script name (without .py)")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")

    tables = sub.add_parser("tables", help="regenerate docs/benchmarks.md from the recorded JSON results",
                            description="Regenerate docs/benchmarks.md from benchmarks/results/*.json (and check "
                                        "it: --check), optionally re-running what this machine can run (--run).")
    from .tables import add_arguments as _tables_arguments
    _tables_arguments(tables)

    demo = sub.add_parser("demo", help="launch the Gradio demo app (mambakit.apps)",
                          description="Start the demo app from mambakit.apps (one tab per domain).")
    demo.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the app")
    return parser


# ---- config resolution --------------------------------------------------------------------------
def resolve(domain: str, target: str, overrides: Sequence[str], quiet: bool = False):
    """``(Recipe, TrainConfig)`` for a recipe name or a saved config file, overrides applied."""
    from .train.config import TrainConfig, apply_overrides
    from .train.recipes import find_recipe, parse_recipe_key

    path = Path(target)
    if target.endswith(".json") or path.is_file():
        config = TrainConfig.load(path)
        if not config.recipe:
            raise ValueError(f"{path} names no recipe (field 'recipe'); cannot rebuild the model and data")
        cfg_domain, name = parse_recipe_key(config.recipe)
        if cfg_domain != domain:
            raise ValueError(f"{path} is a {cfg_domain!r} config, not {domain!r}")
        recipe = find_recipe(domain, name)
    else:
        recipe = find_recipe(domain, target)
        config = recipe.config()
    if quiet:
        overrides = [*overrides, "quiet=true"]
    return recipe, apply_overrides(config, overrides)


def _command_line(argv: Sequence[str]) -> str:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    prefix = "mambakit" if world <= 1 else f"torchrun --standalone --nproc_per_node {world} -m mambakit.cli"
    return f"{prefix} {shlex.join(argv)}"


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def cmd_train(args, argv: Sequence[str]) -> int:
    from .train.engine import fit
    from .train.records import git_commit, machine_info, now_iso, write_record
    from .train.seeding import seed_everything

    recipe, config = resolve(args.domain, args.recipe, args.overrides, args.quiet)
    if args.show_config:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return 0
    seed_everything(config.seed)
    parts = recipe.build(config)
    config = parts.config
    result = fit(parts.model, parts.train_data, parts.eval_data, loss_fn=parts.loss_fn, metrics=parts.metrics,
                 config=config, collate_fn=parts.collate_fn, predict_fn=parts.predict_fn, resume=args.resume,
                 test_data=parts.test_data)
    if not _is_main_process():
        return 0
    summary = {"step": result.step, "metrics": result.final_metrics, "best": result.best_metric,
               "best_step": result.best_step, "output_dir": str(result.output_dir)}
    if parts.test_data is not None:
        summary.update(test_metrics=result.test_metrics, test_metrics_final=result.test_metrics_final)
    print(json.dumps(summary, indent=2))
    if args.record is not None:
        from .train.distributed import resolve_device

        train_records = [r for r in result.history if r.get("split") == "train" and "loss" in r]
        tok_rates = [r["tokens_per_s"] for r in train_records if "tokens_per_s" in r]
        record = {
            "name": recipe.name, "recipe": recipe.key, "description": recipe.description,
            "dataset": parts.dataset_name, "split": parts.split,
            "metrics": result.final_metrics,
            **({"test_metrics": result.test_metrics, "test_metrics_final": result.test_metrics_final,
                "selected_step": result.best_step, "metrics_are": "validation (eval_data); test_metrics: "
                "test split, weights selected on validation"} if parts.test_data is not None else {}),
            "baseline": parts.baseline() if parts.baseline is not None else None,
            "model": {"parameters": sum(p.numel() for p in parts.model.parameters()), **config.model},
            "train": {"steps": result.step, "train_time_s": round(result.train_time_s, 1),
                      "samples_seen": result.step * config.batch_size,
                      "final_train_loss": train_records[-1]["loss"] if train_records else None,
                      "tokens_per_s_median": sorted(tok_rates)[len(tok_rates) // 2] if tok_rates else None},
            "config": config.to_dict(),
            "machine": machine_info(resolve_device(config.device), int(os.environ.get("WORLD_SIZE", "1"))),
            "date": now_iso(), "git": git_commit(), "command": _command_line(argv),
        }
        path = Path(args.record) if args.record else Path("benchmarks/results/recipes") / f"{recipe.name}.json"
        print(f"result recorded in {write_record(path, record)}")
    return 0


def cmd_eval(args) -> int:
    from .train import checkpoint as ckpt
    from .train.engine import evaluate
    from .train.seeding import seed_everything

    recipe, config = resolve(args.domain, args.recipe, args.overrides, args.quiet)
    if args.show_config:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return 0
    folder = Path(args.checkpoint) if args.checkpoint else None
    if folder is None:
        root = Path(config.output_dir) / "checkpoints"
        folder = root / ckpt.BEST if (root / ckpt.BEST / ckpt.WEIGHTS).is_file() else ckpt.latest_checkpoint(root)
        if folder is None:
            raise FileNotFoundError(f"no checkpoint in {root}; pass --checkpoint DIR")
    seed_everything(config.seed)
    parts = recipe.build(config)
    if parts.eval_data is None:
        raise ValueError(f"recipe {recipe.key} has no evaluation set")
    ckpt.load_weights(folder, parts.model)
    metrics = evaluate(parts.model, parts.eval_data, parts.loss_fn, parts.metrics,
                       batch_size=config.eval_batch_size or max(1, config.batch_size // config.grad_accum),
                       device=config.device, precision=config.precision, collate_fn=parts.collate_fn,
                       predict_fn=parts.predict_fn, num_workers=config.num_workers)
    if _is_main_process():
        out = {"recipe": recipe.key, "checkpoint": str(folder), "metrics": metrics}
        print(json.dumps(out, indent=2))
        if args.output:
            Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    return 0


def cmd_recipes(args) -> int:
    from .train.recipes import list_recipes
    recipes = list_recipes(args.domain)
    if not recipes:
        print("no recipes registered" + (f" for {args.domain}" if args.domain else ""))
    for r in recipes:
        print(f"{r.domain:<11} {r.name}@{r.version:<4} {r.description}")
    return 0


def _benchmarks_dir() -> Optional[Path]:
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / "benchmarks").is_dir() and (folder / "pyproject.toml").is_file():
                return folder / "benchmarks"
    return None


def cmd_bench(args) -> int:
    folder = _benchmarks_dir()
    scripts = sorted(p.stem for p in folder.glob("*.py") if not p.name.startswith("_")) if folder else []
    if args.name is None:
        if not scripts:
            print(f"no benchmarks registered yet (no scripts in {folder or 'benchmarks/ of a checkout'})")
            return 0
        print(f"benchmarks in {folder}:")
        for name in scripts:
            print(f"  {name}")
        print("run one with: mambakit bench NAME [args...]")
        return 0
    if args.name not in scripts:
        print(f"error: no benchmark {args.name!r}; available: {', '.join(scripts) or 'none'}", file=sys.stderr)
        return EXIT_ERROR
    return subprocess.call([sys.executable, str(folder / f"{args.name}.py"), *args.args])


def cmd_tables(args) -> int:
    from .tables import run
    return run(args)


def cmd_demo(args) -> int:
    try:
        from .apps import main as launch
    except ImportError as err:   # the app needs the [apps] extra (gradio)
        print(f"error: the demo app needs gradio: pip install 'mambakit[apps]' ({err}). Without it, "
              "`python -m mambakit.demo_dna` runs the DNA language-model walk-through.", file=sys.stderr)
        return EXIT_ERROR
    return int(launch(list(args.args)) or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mambakit`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        return cmd_demo(argparse.Namespace(args=argv[1:]))  # its options (and --help) belong to the app
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    from .train.engine import NonFiniteLossError
    try:
        if args.command == "train":
            return cmd_train(args, argv)
        if args.command == "eval":
            return cmd_eval(args)
        if args.command == "recipes":
            return cmd_recipes(args)
        if args.command == "bench":
            return cmd_bench(args)
        if args.command == "tables":
            return cmd_tables(args)
        return cmd_demo(args)
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
