#!/usr/bin/env bash
# GPU check of dense-reward: bf16 PPO on random-weight SmolLM2-135M- and Qwen2.5-0.5B-shaped policies with a
# BERT-base-shaped reward model, attribution seconds per response for every source, and our SHAP/LIME against
# the plain per-response loops. One CUDA GPU, no network, no Ray, no MLflow: the library alone. About 3-5 minutes
# (the script stops itself after 8). Results: docs/benchmarks/gpu_check.{json,md} (or --out DIR).
#
# Needs, beyond a stock CUDA torch image (torch 2.13 with numpy), these wheels and their dependencies, at the
# versions pinned in requirements.lock:
#     transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 peft==0.21.2 pydantic==2.14.4 shap==0.51.0 lime==0.2.0.1
# Fetch them once on a machine with network:
#     pip download -d wheels transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0 peft==0.21.2 \
#         pydantic==2.14.4 shap==0.51.0 lime==0.2.0.1
# and install them on the GPU machine without network:
#     pip install --no-index --find-links wheels transformers peft pydantic shap lime
# The repository itself is read from this checkout (PYTHONPATH); nothing is downloaded at run time.
#
# Usage: tests/benchmarks/gpu_check.sh [--device cuda:0] [--out DIR] [other options of gpu_check.py]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'" || {
    echo "gpu_check: torch sees no CUDA GPU; for a CPU smoke run use: $PYTHON tests/benchmarks/gpu_check.py --device cpu --smoke" >&2
    exit 1
}
exec timeout 480 "$PYTHON" tests/benchmarks/gpu_check.py "$@"
