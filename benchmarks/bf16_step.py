"""Time one MiniLM-L6 QA training step (forward, backward, AdamW) in fp32 and under bf16 autocast, interleaved.

    python benchmarks/bf16_step.py --threads 2 --rounds 2

This is the measurement behind `train_squad.py --bf16` (HISTORY, 2026-12-06: 1.83-2.00 s fp32 vs 1.12-1.43 s bf16
for a 16 x 192 step at 2 threads). Synthetic token ids of the recipe's batch shape: only the step time is measured,
not accuracy. bf16 needs AVX512_BF16 or AMX to pay off; elsewhere autocast can be slower than fp32.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=192, help="most SQuAD windows are ~180 tokens with per-batch padding")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round and mode")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved fp32 / bf16 rounds")
    a = ap.parse_args(argv)

    import torch
    from transformers import AutoModelForQuestionAnswering

    from hf_fast.training.recipe import load_recipe

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = load_recipe(os.path.join(root, "recipes", "minilm_squad_part.yaml"), base_dir=root)
    model = AutoModelForQuestionAnswering.from_pretrained(r.student)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    ids = torch.randint(1000, 20000, (a.batch, a.seq))
    pos = torch.randint(0, a.seq, (a.batch,))

    def step(bf16: bool):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), start_positions=pos, end_positions=pos)
        out.loss.backward()
        opt.step()
        opt.zero_grad()

    times = {"fp32": [], "bf16": []}
    for _ in range(a.rounds):
        for bf16 in (False, True):
            step(bf16)  # warm-up: autocast caches, allocator
            t = time.perf_counter()
            for _ in range(a.steps):
                step(bf16)
            times["bf16" if bf16 else "fp32"].append((time.perf_counter() - t) / a.steps)
    fp32, bf16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    print(f"threads {a.threads}, batch {a.batch} x seq {a.seq}, load average {os.getloadavg()[0]:.2f}")
    rounds = "; ".join(f"{k} " + " ".join(f"{x:.3f}" for x in v) for k, v in times.items())
    print(f"fp32 {fp32:.3f} s/step, bf16 autocast {bf16:.3f} s/step: {fp32 / bf16:.2f}x (rounds: {rounds})")


if __name__ == "__main__":
    main()
