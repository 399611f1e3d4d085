"""File tags of the benchmark results: one per GPU model, whatever the driver calls it."""
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
