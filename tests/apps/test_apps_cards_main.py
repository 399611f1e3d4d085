"""Model cards (facts from the records, size, cached latency), the tab registry, and ``main``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambakit.apps import cards, make_cards
from mambakit.apps.models import ShippedModel
from mambakit.apps.tabs import TABS, audio, genomics, graphs, tab_modules, timeseries

ROOT = Path(__file__).resolve().parents[2]


def test_every_tab_module_has_the_contract(shipped_vision):
    for module in tab_modules():
        assert module.NAME in TABS and isinstance(module.TITLE, str) and callable(module.build)
        assert module.MODELS and all(isinstance(m, ShippedModel) for m in module.MODELS)
        for m in module.MODELS:   # checkpoints are found next to the installed package, not the CWD
            if module.NAME == "vision" and not shipped_vision:
                continue          # the random stand-in of conftest.py lives in a temporary folder
            assert m.directory.is_absolute() and m.directory.parent.name == "checkpoints"
    with pytest.raises(ValueError, match="unknown tab 'proteins'"):
        tab_modules(["proteins"])


@pytest.mark.parametrize("model", [audio.MODEL, *genomics.MODELS, timeseries.MODEL, graphs.MODEL], ids=lambda m: m.key)
def test_shipped_checkpoints_are_small_and_have_cards(model):
    assert model.available()
    assert model.file_bytes() < 10 * 1024 * 1024
    facts = model.card_facts()
    assert facts["name"] == model.key and facts["metrics"] and facts["dataset"]


@pytest.mark.skipif(not (ROOT / "benchmarks" / "results" / "recipes").is_dir(), reason="no records in this checkout")
def test_cards_are_in_sync_with_the_records():
    for name in make_cards.CARDS:
        folder = make_cards.checkpoint_dir(name)
        if not (folder / "model.safetensors").is_file():
            continue
        record = json.loads((make_cards.RECORDS / f"{name}.json").read_text())
        card = json.loads((folder / "card.json").read_text())
        # a recipe with a validation split records its test numbers in test_metrics
        assert card["metrics"] == (record.get("test_metrics") or record["metrics"])
        assert card["git_commit"] == record["git"]["commit"]
        assert card["parameters"] == record["model"]["parameters"]
    assert make_cards.main(["--check"]) == 0


def test_card_rows_and_cached_latency():
    model = audio.MODEL
    rows = cards.card_rows(model)
    assert rows["test metric"].startswith("accuracy 98.0%")
    assert "FSDD standard split" in rows["trained on"]
    assert rows["size"].startswith(f"{model.parameters():,} parameters")
    assert model.parameters() == model.card_facts()["parameters"]       # the record counted the same model
    first = model.latency_ms()
    assert 0 < first < 5000 and model.latency_ms() == first              # measured once, then cached
    assert f"{first:.1f} ms for one 1-s clip" in rows["latency"]
    text = cards.card_markdown(genomics.MODELS)
    assert text.count("**Model card:") == 2 and "MCC" in text
    quick = cards.card_rows(timeseries.MODEL, measure=False)
    assert quick["latency"] == "measured on first use" and "589,664 parameters" in quick["size"]


def test_card_of_a_missing_checkpoint(tmp_path):
    ghost = ShippedModel("ghost", tmp_path / "none", load=lambda d: None, typical_input=lambda m: (),
                         latency_input="nothing")
    assert "not installed" in cards.card_rows(ghost)["status"]
    with pytest.raises(FileNotFoundError, match="'ghost' is not installed"):
        ghost.model()


def test_format_metric():
    assert cards.format_metric("accuracy", 0.8153) == "accuracy 81.5%"
    assert cards.format_metric("mse", 0.38418) == "MSE (standardised) 0.384"


def test_main_refuses_share_and_bad_options(capsys):
    from mambakit.apps import main

    assert main(["--share"]) == 2
    assert "--share is not available" in capsys.readouterr().err
    assert main(["--port", "70000"]) == 2
    assert main(["--tabs", "vision,proteins", "--no-browser"]) == 2
    assert "unknown tab 'proteins'" in capsys.readouterr().err


def test_cli_reaches_the_app(monkeypatch):
    """``mambakit demo ARGS`` hands ARGS to ``mambakit.apps.main``."""
    import mambakit.apps
    from mambakit.cli import main as cli_main

    seen = {}
    monkeypatch.setattr(mambakit.apps, "main", lambda argv: seen.setdefault("argv", argv) and 0)
    assert cli_main(["demo", "--port", "0", "--no-browser"]) == 0
    assert seen["argv"] == ["--port", "0", "--no-browser"]


def test_card_updater_survives_a_broken_checkpoint(tmp_path):
    from mambakit.audio.models import load_model

    (tmp_path / "config.json").write_text("{not json")
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    broken = ShippedModel("broken", tmp_path, load=load_model, typical_input=lambda m: (), latency_input="x")
    text = cards.card_updater([broken])()
    assert "*The model could not be loaded:" in text and "measured on first use" in text


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_heap_growth_limits_apply_on_glibc():
    from mambakit.apps.app import limit_heap_growth

    assert limit_heap_growth() is True
