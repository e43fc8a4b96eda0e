#!/bin/bash
set -u
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
export PYTHONPATH=$PWD/src:/tmp/site
mkdir -p runs; name=gpuB3s42; s=$(date +%s)
timeout 250 python3 -m dermsight.cli train --config configs/default.yaml --out runs/$name --stage train \
  --set 'data.root=[.devcarry/data/isic-subset,.devcarry/data/isic2020-sample]' \
  --set model.weights=.devcarry/weights/efficientnet-lite0-57934424.pth --set 'data.holdout_sources=[isic2017]' \
  --set evaluation.linear_probe=false --set train.num_workers=12 --set train.num_threads=4 \
  --set seed=42 --set train.source_adversary=3.0 > runs/$name.log 2>&1
echo "rc=$? wall_s=$(( $(date +%s) - s ))" >> runs/$name.log
tar czf /tmp/$name.tgz -C runs $name.log $name/best.pt $name/train_log.jsonl $name/train_summary.json $name/split.csv
split -b 15M /tmp/$name.tgz $OUT/$name.tgz.part-
tail -c 600 runs/$name.log
