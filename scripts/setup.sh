#!/usr/bin/env bash
# Set up Kakashi in ./.venv on a fresh machine (CPU; offline except for PyPI).
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.kakashi-setup
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ]; then
    exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU build of torch unless a CUDA machine asks otherwise (KAKASHI_TORCH=skip keeps
# whatever torch is installed, e.g. a CUDA build installed by hand first).
if [ "${KAKASHI_TORCH:-cpu}" = cpu ] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[dev]"
# The Khronos glTF validator the GLB tests run (npm, pinned by tools/gltf-validator's lock
# file); without npm those tests skip and say so.
if command -v npm >/dev/null; then
    npm ci --prefix tools/gltf-validator --no-audit --no-fund --silent
fi
.venv/bin/kakashi --version
# Compile librosa's numba functions once now (~20 s), so parallel jobs only load the cache.
.venv/bin/python -c "from kakashi.features import warm_up; warm_up()"
touch "$stamp"
