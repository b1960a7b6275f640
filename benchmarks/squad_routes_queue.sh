#!/bin/bash
# Issue 17, item 1: each route of the teacher as a data source (hf_fast/training/qa_augment.py) alone, on the 80%
# student of recipes/minilm_squad_part.yaml (the stored 3-epoch bf16 teacher, global first-order, hidden 1.0), 3 epochs
# over the originals plus that route's features, so every original feature is still seen 3 times and the route's
# cost is the extra steps. Scored in fp32 on all 10,570 dev questions (--skip-export: the int8 engine sits within 0.5
# F1 of fp32 at every sparsity measured); compare with squad_sparsity_queue.sh's 0.8 run, paired per question
# (benchmarks/squad_curve.py). Resumable: a finished run leaves .done; a stopped one resumes from its newest epoch
# checkpoint (--resume). ROUTES="name=json ..." overrides the list.
cd "$(dirname "$0")/.."
T=benchmarks/out/squad17/teacher/final
[ -f $T/config.json ] || { echo "train the teacher first (HISTORY, 2026-12-06)"; exit 1; }
for entry in ${ROUTES:-other_paragraphs='{"other_paragraphs":1}' cross_article='{"cross_article":1}' \
                       word_replace='{"word_replace":1}' strides='{"strides":[[192,64]]}'}; do
  name=${entry%%=*}; spec=${entry#*=}
  out=benchmarks/out/squad17_route_${name}
  [ -f $out/.done ] && continue
  mkdir -p $out
  .venv/bin/python benchmarks/train_squad.py --teacher $T --sparsity 0.8 --epochs 3 --augment-qa "$spec" --threads 1 --bf16 \
     --skip-no-distill --skip-export --resume --out $out >> $out/run.log 2>&1 && touch $out/.done
done
