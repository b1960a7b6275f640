"""Draw the engine-vs-ONNX Runtime plot of benchmarks/RESULTS.md from benchmarks/results/current.json.

    python benchmarks/plot_results.py          # reads benchmarks/results/current.json,
                                               # writes benchmarks/engine_vs_onnxruntime.png (--json / --out)

One panel per thread count; per shape, one bar per "speed" entry of the JSON (speed-up = ONNX Runtime ms / engine
ms, as the entry records it), with the targets as lines (issue 20: 5x at 80% with the default export, 1.5x dense;
the paper's 4x at 80%).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLORS = {"default_export_80": "#2a7", "default_export_90": "#176", "default_export_dense": "#37c",
          "int8_attention_80": "#bd9", "int8_attention_dense": "#9bd"}


def load(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    for entry in data["speed"]:
        for key in ("id", "label", "date", "session", "command", "cells"):
            if key not in entry:
                raise ValueError(f"{path}: speed entry {entry.get('id', '?')!r} has no {key!r}")
    return data


def plot(data: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = data["speed"]
    shapes = list(dict.fromkeys(c["shape"] for e in entries for c in e["cells"]))
    threads = sorted({c["threads"] for e in entries for c in e["cells"]})
    width = 0.8 / len(entries)
    fig, axes = plt.subplots(1, len(threads), figsize=(5.6 * len(threads), 6.4), sharey=True, squeeze=False)
    for ax, thr in zip(axes[0], threads, strict=True):
        for i, e in enumerate(entries):
            cells = {c["shape"]: c for c in e["cells"] if c["threads"] == thr}
            xs = [k + (i - (len(entries) - 1) / 2) * width for k, s in enumerate(shapes) if s in cells]
            ys = [cells[s]["speedup"] for s in shapes if s in cells]
            bars = ax.bar(xs, ys, width, color=COLORS.get(e["id"], f"C{i}"),
                          label=f"{e['label']}, {e['date']} (session {e['session']}): {e.get('baseline_short', '')}")
            ax.bar_label(bars, labels=[f"{y:.2f}x" for y in ys], fontsize=7, padding=2)
        ax.axhline(5.0, color="#c33", ls="--", lw=1, label="issue 20's target at 80%, default export: 5x")
        ax.axhline(4.0, color="#e93", ls="--", lw=1, label="the paper's 4x at 80% (met by the int8-attention export)")
        ax.axhline(1.5, color="#555", ls=":", lw=1, label="issue 20's target dense: 1.5x")
        ax.set_xticks(range(len(shapes)), [f"batch {s.split('x')[0]} x seq {s.split('x')[1]}" for s in shapes])
        ax.set_title(f"{thr} thread{'s' if thr > 1 else ''}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("speed-up: ONNX Runtime int8 ms / engine ms")
    axes[0][0].set_ylim(0, 5.6)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize=8, frameon=False)
    fig.suptitle("hf-fast engine vs ONNX Runtime int8, DistilBERT-base shape, same weights, "
                 "each runtime alone in its process\n"
                 f"{data['machine']['cpu']}; {data['machine']['isa'].split(';')[0]}", fontsize=10)
    fig.tight_layout(rect=(0, 0.3, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=HERE / "results" / "current.json")
    ap.add_argument("--out", type=Path, default=HERE / "engine_vs_onnxruntime.png")
    args = ap.parse_args(argv)
    print(plot(load(args.json), args.out))


if __name__ == "__main__":
    main()
