#!/bin/bash
# One device call: three held-out ISIC 2017 trainings on the GPU (train stage only), then the
# training tests on the GPU. Everything it prints lands in $OUT.
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
left() { echo $(( $1 - ($(date +%s) - T0) )); }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=$PWD/src:/tmp/site
{ nvidia-smi -L; nproc; python3 -c "import sys,torch,timm,numpy,pandas,sklearn,onnxruntime;print(sys.version.split()[0],'torch',torch.__version__,'timm',timm.__version__,'numpy',numpy.__version__,'pandas',pandas.__version__,'sklearn',sklearn.__version__,'ort',onnxruntime.__version__,torch.cuda.get_device_name())"; } > $OUT/env.txt 2>&1
W=.devcarry/weights/efficientnet-lite0-57934424.pth
D='data.root=[.devcarry/data/isic-subset,.devcarry/data/isic2020-sample]'
mkdir -p runs
train() {  # name budget_s overrides...
  local name=$1 budget=$2; shift 2
  local s=$(date +%s)
  timeout $budget python3 -m dermsight.cli train --config configs/default.yaml --out runs/$name \
    --stage train --set "$D" --set model.weights=$W --set 'data.holdout_sources=[isic2017]' \
    --set evaluation.linear_probe=false --set train.num_workers=12 --set train.num_threads=4 "$@" \
    > runs/$name.log 2>&1
  echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> runs/$name.log
  tar czf /tmp/$name.tgz -C runs $name.log $name/best.pt $name/train_log.jsonl $name/train_summary.json $name/split.csv 2>>runs/$name.log
  split -b 15M /tmp/$name.tgz $OUT/$name.tgz.part-
}
train gpuB3s42 200 --set seed=42 --set train.source_adversary=3.0
train gpuA1s42 $(( $(left 470) < 200 ? $(left 470) : 200 )) --set seed=42 --set train.source_adversary=1.0
train gpuA1s43 $(left 470) --set seed=43 --set train.source_adversary=1.0
{ for n in gpuB3s42 gpuA1s42 gpuA1s43; do echo "== $n"; tail -c 1500 runs/$n.log; done; } > $OUT/runs.txt 2>&1
B=$(left 540)
if [ "$B" -gt 40 ]; then
  DERMSIGHT_SHARED_DATA=$PWD/.devcarry/data/isic-subset timeout $B python3 -m pytest -q \
    -p no:cacheprovider tests/test_train.py tests/test_train_adversary.py \
    -k "not ddp and not processes" -m "" > $OUT/pytest.txt 2>&1
  echo "pytest rc=$?" >> $OUT/pytest.txt
fi
echo "total_s=$(( $(date +%s) - T0 ))" >> $OUT/env.txt
