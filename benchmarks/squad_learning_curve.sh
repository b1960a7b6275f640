#!/bin/bash
# Issue 17's learning curve: a dense teacher and its 80% student (recipe recipes/minilm_squad_part.yaml, 3 epochs
# each, bf16 autocast) trained on a seeded random 25% / 50% share of the stored train questions, both scored in
# fp32 on all 10,570 dev questions (--skip-export: at 100% the int8 engine is within 0.1 F1 of fp32, so the curve
# pays for no int8 scoring). The 100% point is squad_sparsity_queue.sh's 0.8 run.
# Resumable: a finished run leaves .done; a stopped one resumes from its newest epoch checkpoint (--resume).
cd "$(dirname "$0")/.."
for f in ${SQUAD_FRACTIONS:-0.25 0.5}; do
  out=benchmarks/out/squad17_lc_f${f}
  [ -f $out/.done ] && continue
  mkdir -p $out
  .venv/bin/python benchmarks/train_squad.py --train-fraction $f --sparsity 0.8 --epochs 3 --threads 1 --bf16 \
     --skip-no-distill --skip-export --resume --out $out >> $out/run.log 2>&1 && touch $out/.done
done
