#!/usr/bin/env bash
# Set up meshgdl on a fresh machine: system libraries for headless rendering (when
# run as root on Debian/Ubuntu), a virtual environment in .venv, and the package with
# its test/viewer extras, every pip call constrained by constraints.txt (torch pinned
# to the CPU build; an unpinned torch pulls gigabytes of CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# EGL + Mesa: headless rendering (viewer exports, tests); xvfb: the viewer window test.
APT_PACKAGES="libegl1 libgl1-mesa-dri libgomp1 xvfb"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    missing=""
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "setup: installing system packages:$missing"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
elif command -v dpkg >/dev/null 2>&1; then
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || echo "setup: warning: system package $p is missing (needed for headless rendering); install it with: sudo apt-get install $APT_PACKAGES"
    done
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
echo "setup: done. Run the tests with: .venv/bin/python -m pytest"
