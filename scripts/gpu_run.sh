#!/usr/bin/env bash
# Run `experiments quick` and the benchmarks on one accelerator, with times.
#
#     scripts/gpu_run.sh [VENV_DIR [WORKDIR [BENCHMARK OPTIONS...]]]
#
# VENV_DIR (default .venv) gets `pip install -e .` when it has no python.
# Options after WORKDIR (default runs/gpu_quick), such as --quick, go to
# `python -m experiments.benchmarks`.
# This script installs nothing else. The JAX CUDA wheel must be installed
# into that venv beforehand, and its version must match the installed jax:
#     VENV_DIR/bin/pip install "jax[cuda12]==$(VENV_DIR/bin/python -c \
#         'import jax; print(jax.__version__)')"
# (use jax[cuda13] for CUDA 13 drivers, or jax[tpu] on a Cloud TPU VM).
# Tests never call this script.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$repo/.venv}"
workdir="${2:-$repo/runs/gpu_quick}"
shift $(( $# < 2 ? $# : 2 ))
cd "$repo"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -e .
fi

# Only the first accelerator, so the figures are those of one device.
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
"$venv/bin/python" -c 'import jax; print("jax", jax.__version__, jax.devices())'
backend="$("$venv/bin/python" -c 'import jax; print(jax.default_backend())')"
if [ "$backend" = "cpu" ]; then
    echo "JAX found no accelerator; install the CUDA wheel (see the header)" >&2
    exit 1
fi

start=$(date +%s)
"$venv/bin/experiments" quick --workdir "$workdir" --overwrite
echo "experiments quick: $(( $(date +%s) - start )) s"

start=$(date +%s)
"$venv/bin/python" -m experiments.benchmarks "$@"
echo "benchmarks: $(( $(date +%s) - start )) s"
