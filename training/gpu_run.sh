#!/usr/bin/env bash
# One training run on the GPU machine (see docs/models/cxr-triage-v1.md, "Training").
# Needs the pack (python -m training.pack) and a pydicom wheel in .whl/ carried along.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src:. PYTHONUNBUFFERED=1
OUT_DIR=${OUT:-/tmp/cxr_out}
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
nproc
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
python3 -m training.train --pack training/cache/pack --out "$OUT_DIR" \
    --time-budget-s "${TIME_BUDGET_S:-280}" --epochs 100 --batch-size 64 --lr 3e-3 \
    2>&1 | tee "$OUT_DIR/train_stdout.log"
