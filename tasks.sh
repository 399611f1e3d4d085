#!/usr/bin/env bash
# mambakit's two entry points on a fresh machine:
#   bash tasks.sh demo   set up .venv and run the main job
#   bash tasks.sh test   set up .venv and run the test suite
# Both create .venv with the pinned CPU constraints on first use.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c "import mambakit, pytest, hypothesis" 2>/dev/null; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -c constraints/ci-cpu-py311.txt -e ".[dev]"
    fi
}

case "${1:-}" in
    demo)
        setup
        shift
        exec "$VENV/bin/mambakit" demo "$@"
        ;;
    test)
        setup
        shift
        set +e
        "$VENV/bin/python" -m pytest -q "$@"
        rc=$?
        # pytest exits 5 when it collected no test: that is a failure of the suite here.
        exit $rc
        ;;
    *)
        echo "usage: bash tasks.sh {demo|test} [args...]" >&2
        exit 2
        ;;
esac
