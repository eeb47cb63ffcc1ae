#!/usr/bin/env bash
# Every GPU check of leaksweep in one short run, for a GPU machine lent for a few minutes:
#   1. the CUDA tests (tests/model/test_train_equivalence.py: the varlen kernel's check, and varlen
#      training against padded training in bf16),
#   2. benchmarks/train_throughput.py for the SmolLM2-135M and Qwen2.5-0.5B shapes.
# Output goes to the terminal and to $OUT/gpu_check.log when OUT is set.
#
# The machine needs python3 with a CUDA torch. The libraries leaksweep pins that such an image
# may lack or hold in another version travel as wheels in .whl/ (pip cannot reach an index there);
# fetch them here first, from the repository root:
#   bash benchmarks/gpu_check.sh --fetch-wheels      # ~19 MB into .whl/ (git-ignored)
# then, on the GPU machine, from the repository root:
#   bash benchmarks/gpu_check.sh [--steps 25] [--config-timeout 150]
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(transformers==5.24.0 trl==1.16.0 datasets==5.2.0 peft==0.21.2 dill==0.4.1 multiprocess==0.70.19
        tokenizers==0.23.3)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    du -sh .whl
    exit 0
fi

steps=25
timeout_s=150
while [[ $# -gt 0 ]]; do
    case "$1" in
        --steps) steps="$2"; shift 2 ;;
        --config-timeout) timeout_s="$2"; shift 2 ;;
        *) echo "gpu_check.sh: unknown argument $1 (use --fetch-wheels, --steps N, --config-timeout S)" >&2; exit 2 ;;
    esac
done

log="${OUT:-/tmp}/gpu_check.log"
exec > >(tee "$log") 2>&1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"

echo "== CUDA tests"
python3 -m pytest -q -rs -p no:cacheprovider tests/model/test_train_equivalence.py -k cuda || echo "CUDA TESTS FAILED"

echo "== training throughput (${steps} steps, at most ${timeout_s} s per configuration)"
# TRL defaults and the bare loop of both shapes were measured on an H100 before (README); they are
# rerun here because only ratios from the same machine and run compare.
python3 benchmarks/train_throughput.py --shapes smollm2-135m --steps "$steps" --warmup 8 \
    --config-timeout "$timeout_s" --configs trl_defaults,leaksweep:sdpa,leaksweep,bare_loop
python3 benchmarks/train_throughput.py --shapes qwen2.5-0.5b --steps "$steps" --warmup 8 \
    --config-timeout "$timeout_s" --configs trl_defaults,leaksweep
