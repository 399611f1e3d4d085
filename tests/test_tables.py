"""``mambakit tables``: docs/benchmarks.md regenerates from the recorded JSON and every number in it
traces to a source file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mambakit import cli
from mambakit.tables import ResultsError, check, load_results, main, render, trace_numbers

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DOC = REPO / "docs" / "benchmarks.md"
SECTIONS = ("## (a) ", "## (b) ", "## (c) ", "## (d) ", "## (e) ", "## (f) ", "## Published anchors")


def copy_results(tmp_path: Path) -> Path:
    """The committed results and anchors under ``tmp_path/benchmarks`` (JSON only)."""
    target = tmp_path / "benchmarks" / "results"
    shutil.copytree(RESULTS, target, ignore=lambda folder, names: [
        n for n in names if not n.endswith(".json") and n != "recipes"])
    shutil.copy(REPO / "benchmarks" / "anchors.json", tmp_path / "benchmarks" / "anchors.json")
    return target


def test_committed_results_render_every_section_with_sources():
    results = load_results(RESULTS)
    text = render(results)
    for heading in SECTIONS:
        assert heading in text
    for path in sorted((RESULTS / "recipes").glob("*.json")):
        assert f"`benchmarks/results/recipes/{path.name}`" in text
    assert trace_numbers(text, REPO) == []
    assert render(load_results(RESULTS)) == text          # deterministic: no timestamps


def test_committed_doc_is_current_and_every_number_has_a_source():
    problems = check(DOC, RESULTS)
    assert problems == [], "\n".join(problems)


def test_trace_flags_unsourced_and_mismatched_numbers(tmp_path, seed):
    rng = np.random.default_rng(seed)
    value = float(rng.uniform(0.1, 0.9))
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "x.json").write_text(json.dumps({"name": "x", "metrics": {"acc": value}, "run": "case-7, 2 cores"}))
    src = "`benchmarks/results/x.json`"
    good = [f"acc {value:.4f} {src}", f"acc {100 * value:.1f}% {src}", f"on 2 cores {src}",
            "| model | 64 | 128 |", "| --- | --- | --- |", f"| m | {value:.3f} | {value:.2f} | {src} |",
            "# 2 headings are labels", "no numbers here"]
    assert trace_numbers("\n".join(good), tmp_path) == []
    bad = {f"acc {value + 0.01:.4f} {src}": "is not in", f"acc {value:.4f}": "without a source",
           f"acc {value:.4f} `benchmarks/results/missing.json`": "missing or not valid JSON",
           f"step 7 {src}": "is not in"}          # the 7 of "case-7" is part of a name, not a number
    for line, why in bad.items():
        problems = trace_numbers(line, tmp_path)
        assert len(problems) == 1 and why in problems[0], (line, problems)


def test_check_catches_a_stale_or_hand_edited_doc(tmp_path):
    results = copy_results(tmp_path)
    doc = tmp_path / "docs" / "benchmarks.md"
    assert main(["--results", str(results), "--out", str(doc)]) == 0
    assert check(doc, results) == []
    assert main(["--results", str(results), "--out", str(doc), "--check"]) == 0

    text = doc.read_text()
    cpu_fwd = json.loads((results / "cpu_cpu.json").read_text())["metrics"]["2x256_b2_l512/fwd/mambakit/seconds"]
    assert cpu_fwd != 0.0799
    edited = text.replace(f"| {cpu_fwd:.4f} |", "| 0.0799 |", 1)  # a hand edit of the CPU table
    assert edited != text
    doc.write_text(edited)
    problems = check(doc, results)
    assert any("stale" in p for p in problems) and any("0.0799 is not in" in p for p in problems)
    assert main(["--results", str(results), "--out", str(doc), "--check"]) == 1

    doc.write_text(text)                                          # back to current, then change a result
    cpu = json.loads((results / "cpu_cpu.json").read_text())
    cpu["metrics"]["2x256_b2_l512/fwd/mambakit/seconds"] = 0.0555
    (results / "cpu_cpu.json").write_text(json.dumps(cpu))
    problems = check(doc, results)
    assert any("stale" in p for p in problems)


def test_new_records_are_picked_up_by_domain(tmp_path, seed):
    results = copy_results(tmp_path)
    acc = float(np.random.default_rng(seed).uniform(0.5, 1.0))
    record = {"name": "toy-graph-mamba", "recipe": "graphs/toy-graph-mamba@1", "dataset": "graphs/toy",
              "split": "toy", "metrics": {"loss": 0.3, "accuracy": acc},
              "baseline": {"name": "GIN, same harness", "metrics": {"accuracy": 0.5}},
              "machine": {"processor": "x86_64", "cpu_count": 2, "gpu": None}, "date": "2026-11-23T00:00:00+00:00",
              "train": {"train_time_s": 12.5}, "git": {}, "command": "mambakit train graphs toy-graph-mamba"}
    (results / "recipes" / "toy-graph-mamba.json").write_text(json.dumps(record))
    text = render(load_results(results))
    assert "### graphs" in text and f"| {acc:.4f} |" in text and "GIN, same harness: 0.5000" in text
    assert trace_numbers(text, tmp_path) == []


def test_malformed_results_give_clear_errors(tmp_path, capsys):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "broken.json").write_text('{"name": "cpu", "metrics": {')
    with pytest.raises(ResultsError, match=r"benchmarks/results/broken.json is not valid JSON \(line 1"):
        load_results(results)
    assert main(["--results", str(results), "--out", str(tmp_path / "doc.md")]) == 2
    assert "broken.json is not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "doc.md").exists()

    (results / "broken.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match="expected a JSON object"):
        load_results(results)
    (results / "broken.json").unlink()
    (results / "recipes").mkdir()
    (results / "recipes" / "r.json").write_text(json.dumps({"name": "r", "metrics": {"accuracy": 1.0}}))
    with pytest.raises(ResultsError, match=r"r.json: missing field\(s\) \['machine', 'date'\]"):
        load_results(results)


def test_missing_results_folder(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="results folder not found"):
        load_results(tmp_path / "nowhere")
    assert cli.main(["tables", "--results", str(tmp_path / "nowhere")]) == cli.EXIT_ERROR
    assert "results folder not found" in capsys.readouterr().err


def test_run_dry_run_lists_the_benchmarks(tmp_path, capsys):
    results = copy_results(tmp_path)
    for script in ("synthetic.py", "cpu.py", "kernels.py"):
        (tmp_path / "benchmarks" / script).write_text("")
    assert main(["--results", str(results), "--run", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "synthetic.py" in out and "cpu.py" in out


def test_speed_records_with_rows_render_as_tables(tmp_path, seed):
    """A benchmark that records ``metrics.rows`` (nested per implementation) and baseline rows is
    rendered as tables whose every number traces to its file."""
    results = copy_results(tmp_path)
    ms = float(np.random.default_rng(seed).uniform(0.1, 9.0))
    record = {"name": "toy_speed", "metrics": {"rows": [
        {"shape": [8, 64, 128], "results": {"triton": {"fwd_ms": ms}, "eager": {"fwd_ms": 2 * ms}}}],
        "crossover_px": None},
        "baseline": {"name": "eager torch", "rows": [{"model": "deit", "ms": 3 * ms}]}}
    (results / "toy_speed_cpu.json").write_text(json.dumps(record))
    text = render(load_results(results))
    section = text[text.index("### toy_speed"):]
    assert "| shape | results/triton/fwd_ms | results/eager/fwd_ms | source |" in section
    assert "| 8x64x128 |" in section and f"{ms:.4f}"[:5] in section
    assert "Baseline in the same run: eager torch" in section and "| crossover_px | — |" in section
    assert trace_numbers(text, tmp_path) == []
