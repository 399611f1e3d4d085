"""The benchmarks' loader of mamba_ssm's Python code without its CUDA extension."""
import io
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from third_party import import_mamba_ssm_python_only  # noqa: E402

INIT = '__version__ = "9.8.7"\nraise ImportError("the real __init__ imports the CUDA extension")\n'
TRITON_MODULE = "import selective_scan_cuda\nVALUE = 42\n"


def _fake_sdist(path: Path) -> Path:
    """A tar.gz laid out like mamba_ssm's sdist: one top folder holding the package."""
    sdist = path / "mamba_ssm-9.8.7.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, text in {"mamba_ssm-9.8.7/mamba_ssm/__init__.py": INIT,
                           "mamba_ssm-9.8.7/mamba_ssm/ops/__init__.py": "",
                           "mamba_ssm-9.8.7/mamba_ssm/ops/triton_code.py": TRITON_MODULE}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return sdist


@pytest.fixture
def clean_modules():
    names = ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton_code", "selective_scan_cuda")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    yield
    for name in names:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


def test_loads_submodules_without_running_the_package_init(tmp_path, clean_modules):
    pkg, note = import_mamba_ssm_python_only(str(_fake_sdist(tmp_path)), str(tmp_path / "src"))
    assert pkg is not None, note
    assert pkg.__version__ == "9.8.7" and "CUDA scan not built" in note
    from mamba_ssm.ops import triton_code
    assert triton_code.VALUE == 42
    import selective_scan_cuda
    with pytest.raises(RuntimeError, match="was not built"):
        selective_scan_cuda.fwd


def test_missing_sdist_is_reported_not_raised(tmp_path, clean_modules):
    pkg, note = import_mamba_ssm_python_only(str(tmp_path / "absent.tar.gz"))
    assert pkg is None and "not given" in note
