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
    if ! "$VENV/bin/python" -c "import mambakit, pytest, hypothesis, torch_geometric, gradio, selenium" 2>/dev/null; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -c constraints/ci-cpu-py311.txt -e ".[dev,apps]"
    fi
    # The app's end-to-end test drives headless Chromium (Debian's chromium + chromium-driver).
    # Install them quietly when missing and apt-get is usable (root); without them that test skips.
    if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            local apt="apt-get install -y -qq chromium chromium-driver"
            DEBIAN_FRONTEND=noninteractive $apt >/dev/null 2>&1 \
                || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive $apt >/dev/null 2>&1; } \
                || echo "note: could not install chromium; the app's browser test will be skipped" >&2
        fi
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
