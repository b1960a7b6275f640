#!/bin/bash
# Issue 17, item 2: recipe variants of the 80% student of recipes/minilm_squad_part.yaml (the stored 3-epoch bf16
# teacher, global first-order, hidden 1.0, 3 epochs, 732 steps), each one change against squad_sparsity_queue.sh's
# 0.8 run (benchmarks/out/squad17_full_s0.8), scored int8 in the engine and ONNX Runtime on all 10,570 dev questions;
# compare paired per question (benchmarks/squad_curve.py). Resumable like the other queues (.done; --resume).
# VARIANTS="name=flags;name=flags" overrides the list (flags are train_squad.py's, e.g. --qat, --layer-weights).
cd "$(dirname "$0")/.."
T=benchmarks/out/squad17/teacher/final
[ -f $T/config.json ] || { echo "train the teacher first (HISTORY, 2026-12-06)"; exit 1; }
IFS=";" read -ra entries <<< "${VARIANTS:-qat=--qat;layerw=--layer-weights 1,1,1,2,2,4;epochs6=--epochs 6}"
for entry in "${entries[@]}"; do
  name=${entry%%=*}; flags=${entry#*=}
  out=benchmarks/out/squad17_recipe_${name}
  [ -f $out/.done ] && continue
  mkdir -p $out
  # shellcheck disable=SC2086  # the flags are words
  .venv/bin/python benchmarks/train_squad.py --teacher $T --sparsity 0.8 --epochs 3 $flags --threads 1 --bf16 \
     --skip-no-distill --resume --out $out >> $out/run.log 2>&1 && touch $out/.done
done
