#!/usr/bin/env bash
# GPU benchmark of `cpt-tasks train` against plain Hugging Face + PyTorch (bench/gpu_train.py says what it does).
#
#   bench/gpu_train.sh --fetch-wheels   here (with PyPI): the pinned wheels the GPU image lacks, into .whl/
#   bench/gpu_train.sh [ARGS]           on a lent H100/H200 (no internet): install .whl/ with --no-deps into
#                                       /tmp/site (it shadows the image's transformers 5), run the benchmark;
#                                       results in $OUT (or bench/results): gpu_train.json, gpu_train.md
#   bench/gpu_train.sh --smoke          here, on the CPU, in .venv: the same path with a tiny model, seconds
#
# The device tool carries .whl/ (git-ignored) with carry: [".whl"]; the wheels must stay under 64 MiB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=bench/gpu_wheels.txt   # one name per line, pinned by requirements/tasks.lock.txt unless it says name==version
LIMIT_MIB=56                  # of the 64 MiB that travel: the repository itself needs the rest

case "${1:-}" in
--fetch-wheels)
    PIP="${PIP:-.tools/bin/python -m pip}"   # the pip that make setup installs uv with
    rm -rf .whl && mkdir -p .whl
    sed 's/#.*//' "$WHEELS" | while read -r name; do
        [ -z "$name" ] && continue
        case "$name" in *==*) pin=$name ;; *) pin=$(grep -i -m1 -E "^${name}==" requirements/tasks.lock.txt | cut -d' ' -f1) ;; esac
        [ -z "$pin" ] && { echo "no pin for $name in requirements/tasks.lock.txt" >&2; exit 2; }
        $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d .whl "$pin" 2> >(grep -v "^WARNING: Location" >&2)
    done
    size=$(du -sm .whl | cut -f1)
    ls -la .whl
    echo "wheels: ${size} MiB (limit ${LIMIT_MIB})"
    [ "$size" -le "$LIMIT_MIB" ] || { echo "too large to carry" >&2; exit 1; }
    exit 0 ;;
--smoke)
    shift
    exec .venv/bin/python bench/gpu_train.py --smoke "$@" ;;
esac

ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run bench/gpu_train.sh --fetch-wheels here first" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PATH="/tmp/site/bin:$PATH" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
python3 - <<'EOF'
import importlib, sys
for name in ("transformers", "tokenizers", "huggingface_hub", "llmfoundry", "composer", "streaming", "pydantic"):
    module = importlib.import_module(name)
    print(f"{name} {getattr(module, '__version__', '?')} from {module.__file__}")
import llmfoundry.command_utils, composer.cli.launcher  # noqa: E401  everything the training processes import
import cpt_tasks.train.train_job, cpt_tasks.convert.convert_job, cpt_tasks.verify.verify_job, cpt_local.samples.sample_mix  # noqa: E401
EOF
python3 bench/gpu_train.py --out "${OUT:-bench/results}" "$@"
