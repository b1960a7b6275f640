#!/bin/bash
# Issue 17's sparsity curve: students of the stored 3-epoch bf16 teacher, recipe recipes/minilm_squad_part.yaml
# (3 epochs, global movement, hidden 1.0, augmentation off), scored on all 10,570 dev questions, int8 in the engine
# and ONNX Runtime. Each entry is "sparsity[:max_layer_sparsity]": 0.8:0.9 is the 80% student with every layer
# capped at 90% (global allocation otherwise empties the layers next to the span head).
# Resumable: a finished run leaves .done; a stopped one resumes from its newest epoch checkpoint (--resume).
cd "$(dirname "$0")/.."
T=benchmarks/out/squad17/teacher/final
[ -f $T/config.json ] || { echo "train the teacher first (HISTORY, 2026-12-06)"; exit 1; }
for entry in ${SQUAD_QUEUE:-0.8 0.5 0.8:0.9 0.7 0.9}; do
  sp=${entry%%:*}; cap=${entry#*:}
  if [ "$cap" = "$entry" ]; then out=benchmarks/out/squad17_full_s${sp}; extra=""
  else out=benchmarks/out/squad17_full_s${sp}_cap${cap}; extra="--max-layer-sparsity $cap"; fi
  [ -f $out/.done ] && continue
  mkdir -p $out
  .venv/bin/python benchmarks/train_squad.py --teacher $T --sparsity $sp $extra --epochs 3 --threads 1 --bf16 \
     --skip-no-distill --resume --out $out >> $out/run.log 2>&1 && touch $out/.done
done
