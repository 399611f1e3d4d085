"""The benchmark scripts: result-file tags per GPU model, and the SSD launch-config sweep (dry run)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from timing import device_tag, gpu_tag  # noqa: E402


@pytest.mark.parametrize("name, tag", [("NVIDIA H100 80GB HBM3", "h100"), ("NVIDIA H200", "h200"),
                                       ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA L40S", "l40s"),
                                       ("Tesla T4", "t4"), ("NVIDIA GeForce RTX 4090", "4090")])
def test_gpu_tag_names_the_model(name, tag):
    assert gpu_tag(name) == tag


def test_cpu_tag():
    assert device_tag("cpu") == "cpu"


def test_tune_ssd_dry_run(tmp_path):
    """The SSD launch-config sweep runs end to end under the Triton interpreter: every swept
    configuration is checked against the float64 reference and timed."""
    pytest.importorskip("triton")
    import json
    import os
    import subprocess

    out = tmp_path / "sweep.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "tune_ssd.py"
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(script), "--dry-run", "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    (entry,) = json.loads(out.read_text())["shapes"]
    rows = entry["out"] + entry["bwd"]
    assert len(rows) == 4 and not any("failed" in r for r in rows), rows
    assert all(r["check_rel_err"] <= 2e-2 for r in rows)
    assert all(r.get("fwd_ms", r.get("fwd_bwd_ms", 0)) > 0 for r in rows)


def test_layout_traffic_counts_the_copies_padding_removes(tmp_path):
    """One Vim layer on the Triton code path (launches stubbed): unaligned rows cost the scan's
    launcher copies, padding removes them, and flipping the tokens moves the least."""
    pytest.importorskip("triton")
    import json
    import os
    import subprocess

    out = tmp_path / "traffic.json"
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "layout_traffic.py"
    run = subprocess.run([sys.executable, str(script), "--length", "37", "--d-model", "16", "--json", str(out)],
                         env=dict(os.environ), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())["results"]
    unpadded, tokens = res["no padding, flip channels (CPU default)"], res["padded to 16, flip tokens (GPU default)"]
    assert unpadded["per_op_units"].get("align_copy", 0) > 0
    assert "align_copy" not in tokens["per_op_units"]
    assert tokens["total_units"] < unpadded["total_units"]


def test_timeseries_seeds_summarises_every_seed_with_its_own_baselines(tmp_path):
    """The seed summary reads seed 2021 from the recipe record and further seeds from the experiment
    log, skips log runs without retrained baselines, and computes means and wins from those runs."""
    import json

    import timeseries_seeds

    results = tmp_path / "results"
    (results / "recipes").mkdir(parents=True)
    (results / "raw").mkdir()
    record = {"config": {"seed": 2021}, "test_metrics": {"mse": 0.30},
              "baseline": {"name": "patchtst", "metrics": {"mse": 0.32},
                           "others": [{"name": "dlinear", "metrics": {"mse": 0.40}}]}}
    (results / "recipes" / "etth2-smamba-h96-v3.json").write_text(json.dumps(record))
    runs = [{"recipe": "timeseries/etth2-smamba-h96@3", "seed": 2022, "test_mse": 0.34,
             "baselines_test_mse": {"patchtst": 0.33, "dlinear": 0.42}},
            {"recipe": "timeseries/etth2-smamba-h96@3", "seed": 2023, "test_mse": 0.1,   # no baselines: skipped
             "baselines_test_mse": {}},
            {"recipe": "timeseries/etth2-smamba-h192@3", "seed": 2022, "test_mse": 0.1,  # another horizon
             "baselines_test_mse": {"patchtst": 0.2, "dlinear": 0.3}}]
    (results / "raw" / "timeseries_v3_experiments_cpu.json").write_text(json.dumps({"runs": runs}))
    assert timeseries_seeds.main(["--results", str(results), "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "timeseries_seeds_cpu.json").read_text())["metrics"]["rows"]
    assert [(r["dataset"], r["horizon"]) for r in rows] == [("etth2", 96), ("etth2", 192)]
    h96 = rows[0]
    assert h96["seeds"] == "2021/2022" and h96["smamba_v3_mean"] == 0.32 and h96["patchtst_mean"] == 0.325
    assert h96["dlinear_mean"] == 0.41 and h96["smamba_beats_patchtst"] == "1 of 2"
    assert rows[1]["seeds"] == "2022" and rows[1]["smamba_v3_std"] is None
