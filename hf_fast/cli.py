"""`hf-fast` command line. Subcommands register themselves in SUBCOMMANDS (name -> (add_arguments, run)),
so `bench`, `train`, ... can be added without touching the others.

    hf-fast --version
    hf-fast info [DIR_OR_REPO] [--backend auto|native|onnxruntime] [--json]
    hf-fast export --model PATH --task TASK --out DIR --calibration FILE [--overwrite] [--block 4x1] ...
    hf-fast bench DIR_OR_REPO [--batch-sizes 1 8] [--seq-lengths 32 128] [--plot bench.png] [--json out.json]
    hf-fast train RECIPE.yaml [--max-steps N] [--out DIR] [--train-limit N] [--eval-limit N] [--push-to-hub REPO]
                              [--measure-speed] [--scope layer|global|latency] [--target-speedup X |
                              --target-latency-ms MS] [--target-shape B,S] [--cost-file costs.json]
    hf-fast push DIR REPO_ID [--private] [--revision BRANCH]
    hf-fast profile (--model DIR | --dims H,HEADS,FFN,LAYERS | --shapes NxK ...) --out costs.json [--batch 1]
                    [--seq 128] [--threads 1] [--blocks 4x1 1x4] [--step 0.05] [--budget 1.0]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def subcommand(name: str, help: str):
    def deco(add_args):
        def reg(run):
            SUBCOMMANDS[name] = (help, add_args, run)
            return run
        return reg
    return deco


# ------------------------------------------------------------------ info
def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="an artifact folder or Hub repo id: explain which kernel runs each "
                   "Linear of it and why (FastModel.explain())")
    p.add_argument("--backend", default=None, help="backend to explain the model on (auto, native or onnxruntime; "
                   "default: HF_FAST_BACKEND or auto: the engine, else ONNX Runtime and the reason)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


@subcommand("info", "show the native runtime (version, ISA, kernels, threads), or with DIR which kernel runs each "
            "Linear of that model and why")(_info_args)
def _info(a: argparse.Namespace) -> int:
    import hf_fast

    if a.model is not None:
        from hf_fast.runtime.modeling import load_fast_model

        model = load_fast_model(a.model, backend=a.backend)
        print(json.dumps(model.explain(as_dict=True), indent=2) if a.json else model.explain())
        return 0
    info = hf_fast.native_info()
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    w = max(len(k) for k in info)
    for k, v in info.items():
        print(f"{k:<{w}}  {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0


# ------------------------------------------------------------------ export
def read_calibration_file(path: str, task: str, limit: int | None = None) -> list:
    """Calibration samples from a file: .txt (one text per line), .jsonl / .json (records with text,
    sentence, question+context or tokens), SQuAD-format .json (question, context pairs), .tsv (first
    column, header line skipped if it is 'sentence...')."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"calibration file {path!r} is a directory, not a file")
    if not p.is_file():
        raise FileNotFoundError(f"calibration file {path!r} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix == ".jsonl":
            items = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif suffix == ".json":
            obj = json.loads(p.read_text(encoding="utf-8"))
            if isinstance(obj, dict) and "data" in obj:  # SQuAD format
                items = [{"question": qa["question"], "context": para["context"]}
                         for art in obj["data"] for para in art["paragraphs"] for qa in para["qas"]]
            elif isinstance(obj, list):
                items = obj
            else:
                raise ValueError("expected a JSON list of samples or SQuAD-format data")
        elif suffix == ".tsv":
            lines = [line.split("\t")[0] for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            items = lines[1:] if lines and lines[0].lower().startswith("sentence") else lines
        else:
            items = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines()
                     if line.strip()]
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"calibration file {path!r} cannot be read: {what}") from exc
    if limit is not None:
        items = items[:limit]
    if not items:
        raise ValueError(f"calibration file {path!r} holds no samples")
    return items


def _quantize_attention(v: str):
    choice = {"auto": "auto", "on": True, "off": False}.get(v)
    if choice is None:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'on' or 'off' (or no value: on), got {v!r}")
    return choice


def _alpha(v: str):
    if v in ("none", "off"):
        return None
    if v == "default":
        return v
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'none', got {v!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"smooth-quant alpha must lie in [0, 1], got {x}")
    return x


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
    p.add_argument("--block", default=None, help="block shape to report sparsity in (4x1, 1x4, 4x4); default: detect")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: --model)")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights (avoids ONNX Runtime u8s8 saturation on CPUs without VNNI)")
    p.add_argument("--quantize-attention", nargs="?", const=True, default=False, type=_quantize_attention,
                   metavar="auto",
                   help="also quantize the attention MatMuls (q.k^T and probs.v) to int8: faster, slightly less "
                        "accurate (off by default); 'auto': only in the layers whose output it moves by at most "
                        "--attention-tolerance, measured on held-back calibration samples")
    p.add_argument("--attention-tolerance", type=float, default=None, metavar="REL",
                   help="relative output error per layer that --quantize-attention auto allows (default: "
                        "hf_fast.export.attention_auto.DEFAULT_TOLERANCE)")
    p.add_argument("--smooth-quant", type=_alpha, default="default", metavar="ALPHA|none",
                   help="SmoothQuant migration strength in [0, 1] for the int8 Linear inputs, or 'none' "
                        "(default: the exporter's, hf_fast.export.DEFAULT_SMOOTH_QUANT)")
    p.add_argument("--keep-fp32", action="store_true", help="also write model_fp32.onnx")
    p.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                   help="replace the hf-fast artifact already in --out (atomically; a folder holding other files is "
                        "never replaced). Default: refuse to replace it")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _check_export_paths(a: argparse.Namespace) -> list:
    """Every path and number of `hf-fast export`, checked before the model loads (seconds) so that a typo
    fails at once. Returns the calibration samples."""
    from hf_fast.export.artifact import check_out_dir
    from hf_fast.export.tasks import normalize_task

    if a.calibration is None:
        raise ValueError("static int8 quantization calibrates on real samples: pass --calibration FILE "
                         "(.txt one text per line, .jsonl, SQuAD .json or .tsv)")
    for flag, v in (("--num-calibration", a.num_calibration), ("--max-length", a.max_length)):
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    model = Path(a.model)
    if not model.is_dir() or not (model / "config.json").is_file():
        raise FileNotFoundError(f"--model {a.model!r} is not a local transformers checkpoint (no config.json)")
    if a.tokenizer is not None and not Path(a.tokenizer).is_dir():
        raise FileNotFoundError(f"--tokenizer {a.tokenizer!r} is not a directory")
    if a.task is not None:
        normalize_task(a.task)
    check_out_dir(Path(a.out), a.overwrite)
    return read_calibration_file(a.calibration, a.task, limit=a.num_calibration)


@subcommand("export", "export a checkpoint to a sparse int8 ONNX fast artifact")(_export_args)
def _export(a: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hf_fast._deps import require_train

    require_train("hf-fast export", ("torch",))  # before the path checks: what to install comes first
    samples = _check_export_paths(a)
    from hf_fast.export import export, load_model_for_task

    model, task = load_model_for_task(a.model, a.task)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(a.tokenizer or a.model)
    out = export(model, tok, a.out, calibration_dataset=samples, task=task, block=a.block,
                 calibration_method=a.calibration_method, max_length=a.max_length, keep_fp32=a.keep_fp32,
                 overwrite=a.overwrite, progress=not a.quiet, reduce_range=a.reduce_range,
                 quantize_attention=a.quantize_attention, attention_tolerance=a.attention_tolerance,
                 **({} if a.smooth_quant == "default" else {"smooth_quant": a.smooth_quant}))
    fc = json.loads((Path(out) / "fast_config.json").read_text())
    print(f"wrote {out}: task={fc['task']} arch={fc['architecture']} block={fc['block']} "
          f"sparsity={fc['sparsity']['overall']:.4f} model.onnx={fc['files']['model.onnx']['bytes'] / 2**20:.2f} MiB "
          f"calibration={fc['quantization']['calibration_size']} ({fc['quantization']['calibration_method']})")
    return 0


# ------------------------------------------------------------------ bench
def _check_writable_file(path: str, flag: str) -> None:
    """Fail now, not after the work, when `path` cannot be written (a directory, or no writable ancestor)."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{flag} {path!r} is a directory, not a file")
    probe = p.parent
    while not probe.exists():  # plot() creates missing parent folders
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{flag} {path!r}: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path!r}: no write permission in {str(probe)!r}")


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="fast folder (hf_fast.save_fast / hf-fast export) or Hub repo id")
    p.add_argument("--batch-sizes", "-b", type=int, nargs="+", default=[1, 8], help="default: 1 8")
    p.add_argument("--seq-lengths", "-s", type=int, nargs="+", default=[32, 128], help="default: 32 128")
    p.add_argument("--runtimes", nargs="+", default=["native", "onnxruntime", "openvino", "pytorch"],
                   choices=["native", "onnxruntime", "openvino", "pytorch"],
                   help="default: all four (openvino: skipped with a note when not installed; pytorch needs "
                        "model.safetensors in the folder, or --pytorch DIR)")
    p.add_argument("--pytorch", default=None, help="transformers checkpoint for the PyTorch column")
    p.add_argument("--iterations", "-n", type=int, default=20, help="timed rounds per shape (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: the runtime's)")
    p.add_argument("--plot", default=None, help="write a PNG of latency vs batch size and sequence length")
    p.add_argument("--json", default=None, help="write the measurements as JSON")
    p.add_argument("--revision", default=None, help="Hub revision (repo ids)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


@subcommand("bench", "latency of a fast folder: hf-fast engine vs ONNX Runtime, OpenVINO, PyTorch (table + plot)")(
    _bench_args)
def _bench(a: argparse.Namespace) -> int:
    import hf_fast
    from hf_fast.bench import bench_folder, format_table, plot
    from hf_fast.hub import resolve_artifact

    for flag, path in (("--plot", a.plot), ("--json", a.json)):
        if path is not None:
            _check_writable_file(path, flag)
    if a.pytorch is not None and not Path(a.pytorch).is_dir():
        raise FileNotFoundError(f"--pytorch {a.pytorch!r} is not a directory")
    folder = resolve_artifact(a.model, revision=a.revision, artifact_only="pytorch" not in a.runtimes)
    rows = bench_folder(folder, a.batch_sizes, a.seq_lengths, runtimes=a.runtimes, iterations=a.iterations,
                        warmup=a.warmup, threads=a.threads, pytorch=a.pytorch, progress=not a.quiet)
    info = hf_fast.native_info()
    print(f"{a.model}: isa={info['isa']} threads={a.threads or info['threads']} cpu={info.get('cpu')}")
    print(format_table(rows))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)  # as --plot does
        from hf_fast._atomic import write_text

        write_text(a.json, json.dumps({"model": str(a.model), "native": info, "rows": rows}, indent=2))
    if a.plot:
        isa = info["isa"]
        print(f"plot: {plot(rows, a.plot, title=f'{Path(str(a.model)).name} ({isa})')}")
    return 0


# ------------------------------------------------------------------ train
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("--out", "-o", default=None, help="output root (default: the recipe's output dirs)")
    p.add_argument("--base-dir", default=None, help="resolve relative recipe paths here (default: current dir)")
    p.add_argument("--teacher", default=None, help="use this fine-tuned teacher instead of training one")
    p.add_argument("--max-steps", type=int, default=None, help="cap every training run (smoke tests)")
    p.add_argument("--train-limit", type=int, default=None, help="use the first N training examples")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N examples")
    p.add_argument("--block", default=None, help="override fast_config.block")
    p.add_argument("--sparsity", type=float, default=None, help="override fast_config.sparsity")
    p.add_argument("--no-distill-baseline", action="store_true", help="also prune a student without distillation")
    p.add_argument("--skip-export", action="store_true", help="stop after training (no int8 folder, no int8 eval)")
    p.add_argument("--measure-speed", action=argparse.BooleanOptionalAction, default=False,
                   help="time the engine and ONNX Runtime (interleaved rounds) for the report and the card "
                        "(default: off)")
    p.add_argument("--no-speed", dest="measure_speed", action="store_false", help=argparse.SUPPRESS)  # old spelling
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="upload the distilled student's folder")
    p.add_argument("--token", default=None, help="Hub token for --push-to-hub (default: the stored one)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    from hf_fast.training.run_recipe import add_pruning_arguments

    add_pruning_arguments(p)  # --scope layer|global|latency, --target-speedup, --cost-file, ...


@subcommand("train", "run a recipe end to end: teacher, prune + distil, export, evaluate, report")(_train_args)
def _train(a: argparse.Namespace) -> int:
    if not Path(a.recipe).is_file():
        raise FileNotFoundError(f"recipe {a.recipe!r} does not exist")
    from hf_fast._deps import require_train

    require_train("hf-fast train", ("torch", "accelerate", "datasets", "yaml"))
    from hf_fast.training.run_recipe import pruning_overrides, run_recipe

    fc = pruning_overrides(a)  # a ValueError naming the flags, before anything loads
    res = run_recipe(a.recipe, overrides={"fast_config": fc} if fc else None, base_dir=a.base_dir,
                     teacher=a.teacher, max_steps=a.max_steps, out=a.out,
                     train_limit=a.train_limit, eval_limit=a.eval_limit, block=a.block, sparsity=a.sparsity,
                     no_distill_baseline=a.no_distill_baseline, skip_export=a.skip_export,
                     measure_speed=a.measure_speed, push_to_hub=a.push_to_hub, token=a.token, progress=not a.quiet)
    print(f"results: {Path(res['root']) / 'results.json'}  report: {Path(res['root']) / 'report.md'}")
    return 0


# ------------------------------------------------------------------ push
def _push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="fast folder to upload (hf_fast.save_fast / hf-fast export)")
    p.add_argument("repo_id", help="namespace/name on the Hub (HF_ENDPOINT selects the Hub)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored one)")
    p.add_argument("--message", "-m", default=None, help="commit message")


@subcommand("push", "upload a fast folder to the Hub (create_repo + upload_folder)")(_push_args)
def _push(a: argparse.Namespace) -> int:
    from hf_fast.hub import push_fast_folder

    info = push_fast_folder(a.folder, a.repo_id, token=a.token, private=a.private or None, revision=a.revision,
                            commit_message=a.message)
    print(f"pushed {a.folder} -> {a.repo_id}: {getattr(info, 'commit_url', info)}")
    return 0


# ------------------------------------------------------------------ profile
def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", action="append", default=[], help="a transformers checkpoint folder (or fast "
                   "folder) whose config.json gives the encoder's dimensions; repeatable")
    p.add_argument("--dims", action="append", default=[], metavar="H,HEADS,FFN,LAYERS",
                   help="a model's dimensions without a checkpoint, e.g. 384,12,1536,6 (MiniLM-L6); repeatable")
    p.add_argument("--shapes", nargs="+", default=[], metavar="NxK", help="extra Linear shapes [out x in] to time "
                   "alone (curves only: a latency target also needs the model's engine timings)")
    p.add_argument("--out", "-o", required=True, help="the cost file to write (JSON, written atomically)")
    p.add_argument("--batch", type=int, default=1, help="target batch size (default 1)")
    p.add_argument("--seq", type=int, default=128, help="target sequence length (default 128)")
    p.add_argument("--threads", type=int, default=1, help="engine threads (default 1)")
    p.add_argument("--blocks", nargs="+", default=["4x1", "1x4"], help="block shapes to profile (default 4x1 1x4)")
    p.add_argument("--step", type=float, default=0.05, help="sparsity grid step (default 0.05: 0, 0.05 .. 0.95)")
    p.add_argument("--budget", type=float, default=1.0, help="seconds of timing rounds per Linear shape and per "
                   "engine point (default 1.0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cost file")


@subcommand("profile", "measure the engine's cost curves (Linear time vs block sparsity, fixed cost) on this CPU "
            "for FastConfig(scope='latency', cost_file=...)")(_profile_args)
def _profile(a: argparse.Namespace) -> int:
    import numpy as np

    from hf_fast.cost_curves import model_dims, parse_shapes
    from hf_fast.profile import profile_costs

    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise FileExistsError(f"{a.out} exists; pass --overwrite to replace it")
    if not 0.0 < a.step < 1.0:
        raise ValueError(f"--step must lie in (0, 1), got {a.step}")
    if a.budget <= 0:
        raise ValueError(f"--budget must be positive, got {a.budget}")
    models = []
    for m in a.model:
        from transformers import AutoConfig

        if not (Path(m) / "config.json").is_file():
            raise FileNotFoundError(f"--model {m!r}: no config.json there")
        models.append(model_dims(AutoConfig.from_pretrained(m)))
    for d in a.dims:
        try:
            dims = tuple(int(x) for x in d.split(","))
        except ValueError:
            dims = ()
        if len(dims) != 4 or min(dims) < 1 or dims[0] % dims[1]:
            raise ValueError(f"--dims {d!r} must be H,HEADS,FFN,LAYERS of positive ints with HEADS dividing H")
        models.append(dims)
    sparsities = [round(float(x), 6) for x in np.arange(0.0, 1.0 - 1e-9, a.step)]
    curves = profile_costs(models=models, shapes=parse_shapes(a.shapes), target_shape=(a.batch, a.seq),
                           threads=a.threads, blocks=a.blocks, sparsities=sparsities, budget_s=a.budget,
                           log=lambda msg: print(f"hf-fast profile: {msg}", file=sys.stderr))
    curves.save(out)
    print(f"wrote {out}: {len(curves.linears)} Linear shape(s), {len(curves.models)} model(s), blocks "
          f"{' '.join(a.blocks)}, (batch, seq) = ({a.batch}, {a.seq}), {a.threads} thread(s), "
          f"{curves.machine.get('cpu')} {curves.machine.get('isa')}")
    return 0


# ------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    import hf_fast

    ap = argparse.ArgumentParser(prog="hf-fast", description="Block-sparse int8 BERT-family models on CPUs")
    ap.add_argument("--version", action="version", version=f"hf-fast {hf_fast.__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_args, run) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
        sp.set_defaults(_run=run)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if not getattr(a, "_run", None):
        ap.print_help()
        return 2
    try:
        return int(a._run(a) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
            PermissionError, NotImplementedError, RuntimeError, ImportError) as exc:
        print(f"hf-fast {a.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
