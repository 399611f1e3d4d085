"""The ``mambakit`` CLI: help everywhere, errors as exit codes, and a real tiny recipe run."""
from __future__ import annotations

import json

import pytest

from mambakit.cli import main
from mambakit.train.recipes import find_recipe


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["bench", "--help"],
                                  ["demo", "--help"], ["recipes", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mambakit" in out
    if argv[0] == "train":
        for key in ("optim.lr", "max_steps", "grad_accum", "ema_decay", "--resume", "torchrun"):
            assert key in out


def test_errors_become_exit_codes(capsys, tmp_path):
    assert main(["train", "core", "no-such-recipe"]) == 2
    assert "klebsiella-lm-tiny" in capsys.readouterr().err   # lists what exists
    assert main(["train", "core", "klebsiella-lm-tiny", "--set", "optim.lrr=1"]) == 2
    assert "unknown config key 'optim.lrr'" in capsys.readouterr().err
    assert main(["train", "nodomain", "x"]) == 2
    assert main(["demo", "--port", "70000"]) == 2                 # the app's own options
    assert "--port must be in" in capsys.readouterr().err
    assert main(["recipes", "core"]) == 0
    assert "klebsiella-lm-tiny@1" in capsys.readouterr().out
    assert main(["bench"]) == 0


def test_dna_lm_demo_trains_evaluates_and_generates(capsys, tmp_path):
    """The DNA language-model walk-through (``python -m mambakit.demo_dna``), shortened: real
    genomes in, bits per base and a continuation out."""
    from mambakit.data import dataset_path
    try:
        present = dataset_path("genomics", "klebsiella").is_dir()
    except FileNotFoundError:
        present = False
    if not present:
        pytest.skip("../shared/data/genomics/klebsiella is not present")
    from mambakit.demo_dna import main as demo_main
    assert demo_main(["--steps", "3", "--new-tokens", "8", "--output-dir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "bits/base" in out and "bases match" in out


def test_show_config_applies_overrides(capsys):
    assert main(["train", "core", "klebsiella-lm-tiny", "--set", "model.d_model=32", "-q", "--show-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["d_model"] == 32 and cfg["quiet"] is True
    assert cfg["recipe"] == "core/klebsiella-lm-tiny@1"


def _data_or_skip():
    try:
        from mambakit.train.lm_recipes import genome_files
        genome_files()
    except FileNotFoundError as err:
        pytest.skip(f"Klebsiella genomes not available: {err}")


def test_cli_trains_the_klebsiella_lm_recipe_on_real_data(tmp_path, capsys):
    _data_or_skip()
    out = tmp_path / "run"
    tiny = ["--set", f"output_dir={out}", "--set", "max_steps=3", "--set", "batch_size=4", "--set", "data.seq_len=32",
            "--set", "data.eval_windows=6", "--set", "model.d_model=16", "--set", "model.n_layer=1",
            "--set", "data.baseline_order=2", "--set", "data.baseline_orders=[0]", "-q"]
    record = tmp_path / "result.json"
    assert main(["train", "core", "klebsiella-lm-tiny", *tiny, "--record", str(record)]) == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["split"] == "eval"]
    assert evals and evals[-1]["step"] == 3 and 0 < evals[-1]["bits_per_base"] < 4
    assert (out / "checkpoints" / "step-00000003" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "best" / "config.json").is_file()
    rec = json.loads(record.read_text())
    for key in ("name", "dataset", "split", "metrics", "baseline", "machine", "date", "git", "command"):
        assert key in rec
    assert "MGH78578" in rec["split"] and rec["baseline"]["order"] == 2
    assert rec["metrics"]["bits_per_base"] == pytest.approx(evals[-1]["bits_per_base"])
    capsys.readouterr()

    # eval the best checkpoint through the saved config; --resume of a finished run is a no-op
    assert main(["eval", "core", str(out / "train_config.json"), "--output", str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev["checkpoint"].endswith("best") and ev["metrics"]["bits_per_base"] == pytest.approx(
        rec["metrics"]["bits_per_base"], abs=1e-5)
    assert main(["train", "core", str(out / "train_config.json"), "--resume"]) == 0
    assert main(["train", "core", str(out / "train_config.json")]) == 2   # refuses to overwrite
    assert "already holds checkpoints" in capsys.readouterr().err


def test_recipe_registry_versions():
    recipe = find_recipe("core", "klebsiella-lm-tiny@1")
    assert recipe.version == 1 and recipe.config().recipe == "core/klebsiella-lm-tiny@1"
    with pytest.raises(ValueError, match="versions"):
        find_recipe("core", "klebsiella-lm-tiny@9")


def test_register_recipe_validates_its_arguments():
    from mambakit.train import TrainConfig, register_recipe
    recipe = find_recipe("core", "klebsiella-lm-tiny")
    with pytest.raises(ValueError, match="already registered"):
        register_recipe("core", "klebsiella-lm-tiny", 1, recipe.builder, config=TrainConfig())
    with pytest.raises(ValueError, match="domain"):
        register_recipe("chemistry", "x", 1, recipe.builder, config=TrainConfig())
    with pytest.raises(ValueError, match="lowercase"):
        register_recipe("core", "Bad Name", 1, recipe.builder, config=TrainConfig())
    with pytest.raises(ValueError, match="version"):
        register_recipe("core", "x", 0, recipe.builder, config=TrainConfig())
