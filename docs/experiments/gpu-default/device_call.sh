#!/bin/bash
# One device call: the full default `dermsight train` (train + finalize, one command) on the GPU,
# on a WebP copy of both data folders (make_copy.py beside this: 152 px q45 and 160 px q55; only
# 64 MiB travel) and fp16-stored Lite0 weights. Carried: .devcarry/{d160.tgz,lite0-fp16.pth,gpu_default.sh}, .whl
# (pydantic 2.14.4, pydantic-core 2.50.5, annotated-types 0.8.0, typing-inspection 0.4.5 for cp312).
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=$PWD/src:/tmp/site
{ nvidia-smi -L; nproc; free -g | head -2; python3 -c "import sys,torch,timm,numpy,pandas,sklearn,onnxruntime,pydantic;print(sys.version.split()[0],'torch',torch.__version__,'timm',timm.__version__,'numpy',numpy.__version__,'pandas',pandas.__version__,'sklearn',sklearn.__version__,'ort',onnxruntime.__version__,'pydantic',pydantic.__version__)"; } > $OUT/env.txt 2>&1
tar xzf .devcarry/d160.tgz -C .devcarry || exit 4
mkdir -p runs; R=runs/gpu-default
T1=$(date +%s)
timeout ${BUDGET:-540} python3 -m dermsight.cli train --config configs/default.yaml --out $R \
  --set 'data.root=[.devcarry/d160/isic-subset,.devcarry/d160/isic2020-sample]' \
  --set model.weights=.devcarry/lite0-fp16.pth --set train.num_workers=14 --set train.num_threads=12 \
  > $OUT/train.log 2>&1
RC=$?
T2=$(date +%s)
{ echo "rc=$RC setup_s=$((T1-T0)) command_s=$((T2-T1))"
  [ -f $R/train_summary.json ] && echo "train_summary_written_at_s=$(( $(stat -c %Y $R/train_summary.json) - T1 ))"
  [ -f $R/best.pt ] && echo "best_pt_at_s=$(( $(stat -c %Y $R/best.pt) - T1 ))"
} > $OUT/timing.txt 2>&1
tar czf $OUT/results.tgz --ignore-failed-read -C $R train_summary.json finalize_summary.json train_log.jsonl config.json bundle/card.json bundle/report.html 2>>$OUT/timing.txt
grep -v "it/s\]\|s/it\]" $OUT/train.log | tail -c 3000
cat $OUT/timing.txt
