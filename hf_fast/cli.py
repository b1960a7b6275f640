"""`hf-fast` command line. Subcommands register themselves in SUBCOMMANDS (name -> (add_arguments, run)),
so `bench`, `train`, ... can be added without touching the others.

    hf-fast info [--json]
    hf-fast export --model PATH --task TASK --out DIR [--calibration FILE] [--block 4x1] ...
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

SUBCOMMANDS: Dict[str, Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def subcommand(name: str, help: str):
    def deco(add_args):
        def reg(run):
            SUBCOMMANDS[name] = (help, add_args, run)
            return run
        return reg
    return deco


# ------------------------------------------------------------------ info
def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@subcommand("info", "show the native runtime: version, ISA, kernels, threads")(_info_args)
def _info(a: argparse.Namespace) -> int:
    import hf_fast

    info = hf_fast.native_info()
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    w = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{w}}  {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0


# ------------------------------------------------------------------ export
def read_calibration_file(path: str, task: str, limit: Optional[int] = None) -> List:
    """Calibration samples from a file: .txt (one text per line), .jsonl / .json (records with text,
    sentence, question+context or tokens), SQuAD-format .json (question, context pairs), .tsv (first
    column, header line skipped if it is 'sentence...')."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"calibration file {path!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        items = [json.loads(l) for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
    elif suffix == ".json":
        obj = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(obj, dict) and "data" in obj:  # SQuAD format
            items = [{"question": qa["question"], "context": para["context"]}
                     for art in obj["data"] for para in art["paragraphs"] for qa in para["qas"]]
        elif isinstance(obj, list):
            items = obj
        else:
            raise ValueError(f"{path}: expected a JSON list of samples or SQuAD-format data")
    elif suffix == ".tsv":
        lines = [l.split("\t")[0] for l in p.read_text(encoding="utf-8").splitlines() if l.strip()]
        items = lines[1:] if lines and lines[0].lower().startswith("sentence") else lines
    else:
        items = [l.strip() for l in p.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()]
    if limit is not None:
        items = items[:limit]
    return items


def _export_args(p: argparse.ArgumentParser) -> None:
    from hf_fast.export.tasks import TASKS

    p.add_argument("--model", "-m", required=True, help="local transformers checkpoint directory")
    p.add_argument("--task", default=None, help=f"one of {', '.join(TASKS)} (default: from config.json)")
    p.add_argument("--out", "-o", required=True, help="artifact output directory (replaced atomically)")
    p.add_argument("--calibration", default=None,
                   help="calibration samples: .txt lines, .jsonl/.json records, SQuAD .json, or .tsv")
    p.add_argument("--num-calibration", type=int, default=256, help="use at most N samples (default 256)")
    p.add_argument("--calibration-method", default="minmax", choices=["minmax", "percentile", "entropy"])
    p.add_argument("--max-length", type=int, default=128, help="tokenizer truncation for calibration")
    p.add_argument("--block", default=None, help="block shape to report sparsity in (4x1, 1x4); default: detect")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --model)")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights (avoids ONNX Runtime u8s8 saturation on CPUs without VNNI)")
    p.add_argument("--keep-fp32", action="store_true", help="also write model_fp32.onnx")
    p.add_argument("--no-overwrite", action="store_true", help="fail if --out already holds an artifact")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


@subcommand("export", "export a checkpoint to a sparse int8 ONNX fast artifact")(_export_args)
def _export(a: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hf_fast.export import export, load_model_for_task

    if a.calibration is None:
        raise ValueError("static int8 quantization calibrates on real samples: pass --calibration FILE "
                         "(.txt one text per line, .jsonl, SQuAD .json or .tsv)")
    model, task = load_model_for_task(a.model, a.task)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(a.tokenizer or a.model)
    samples = read_calibration_file(a.calibration, task, limit=a.num_calibration)
    out = export(model, tok, a.out, calibration_dataset=samples, task=task, block=a.block,
                 calibration_method=a.calibration_method, max_length=a.max_length, keep_fp32=a.keep_fp32,
                 overwrite=not a.no_overwrite, progress=not a.quiet, reduce_range=a.reduce_range)
    fc = json.loads((Path(out) / "fast_config.json").read_text())
    print(f"wrote {out}: task={fc['task']} arch={fc['architecture']} block={fc['block']} "
          f"sparsity={fc['sparsity']['overall']:.4f} model.onnx={fc['files']['model.onnx']['bytes'] / 2**20:.2f} MiB "
          f"calibration={fc['quantization']['calibration_size']} ({fc['quantization']['calibration_method']})")
    return 0


# ------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hf-fast", description="Block-sparse int8 BERT-family models on CPUs")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_args, run) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
        sp.set_defaults(_run=run)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "_run", None):
        ap.print_help()
        return 2
    try:
        return int(a._run(a) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError,
            NotImplementedError) as exc:
        print(f"hf-fast {a.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
