"""`hf-fast` CLI: info and export (argument errors come back as exit code 1 with a message)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from _export_helpers import SENTENCES, tiny_model, tokenizer  # noqa: E402

from hf_fast.cli import build_parser, main  # noqa: E402


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["isa"] in info["supported_isas"]


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "export" in capsys.readouterr().out
    assert {"info", "export"} <= set(build_parser()._subparsers._group_actions[0].choices)


def _checkpoint_and_calibration(tmp_path, task):
    """A tiny DistilBERT checkpoint folder for `task` and a calibration text file."""
    tok = tokenizer()
    ck = tmp_path / "ck"
    tiny_model("distilbert", task, tok.vocab_size).save_pretrained(ck)
    tok.save_pretrained(ck)
    cal = tmp_path / "cal.txt"
    cal.write_text("\n".join(SENTENCES) + "\n")
    return ck, cal


def test_export_cli(tmp_path, capsys):
    ck, cal = _checkpoint_and_calibration(tmp_path, "token-classification")
    out = tmp_path / "art"
    rc = main(["export", "--model", str(ck), "--out", str(out), "--calibration", str(cal), "--quiet",
               "--num-calibration", "10", "--keep-fp32"])
    assert rc == 0, capsys.readouterr().err
    fc = json.loads((out / "fast_config.json").read_text())
    assert fc["task"] == "token-classification"  # inferred from config.json architectures
    assert fc["quantization"]["calibration_size"] == 10 and (out / "model_fp32.onnx").is_file()
    assert "wrote" in capsys.readouterr().out
    # errors: missing calibration, unsupported task, output is a file
    assert main(["export", "--model", str(ck), "--out", str(tmp_path / "x")]) == 1
    assert "--calibration FILE" in capsys.readouterr().err
    assert main(["export", "--model", str(ck), "--task", "translation", "--out", str(tmp_path / "x"),
                 "--calibration", str(cal)]) == 1
    assert "unsupported task" in capsys.readouterr().err
    assert main(["export", "--model", str(ck), "--out", str(cal), "--calibration", str(cal), "-q"]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "x"),
                 "--calibration", str(cal)]) == 1
    assert "not a local transformers checkpoint" in capsys.readouterr().err
    # a SQuAD-format file calibrates a QA export
    tok = tokenizer()
    qa = tmp_path / "qa"
    tiny_model("bert", "question-answering", tok.vocab_size).save_pretrained(qa)
    tok.save_pretrained(qa)
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": " ".join(SENTENCES), "qas": [
        {"question": s, "id": str(i), "answers": []} for i, s in enumerate(SENTENCES[:5])]}]}]}))
    assert main(["export", "--model", str(qa), "--task", "qa", "--out", str(tmp_path / "qa-art"),
                 "--calibration", str(squad), "-q"]) == 0
    assert json.loads((tmp_path / "qa-art" / "fast_config.json").read_text())["quantization"]["calibration_size"] == 5


# ------------------------------------------------------------------ bench / train / push / --help
def test_every_subcommand_has_help(capsys):
    for cmd in ("info", "export", "bench", "train", "push"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        assert "usage: hf-fast " + cmd in capsys.readouterr().out


def test_console_script_is_declared():
    import configparser
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "hf-fast = hf_fast.cli:main" in cfg["options.entry_points"]["console_scripts"]


def test_bench_cli(tmp_path, capsys):
    import hf_fast

    tok = tokenizer()
    folder = hf_fast.save_fast(tiny_model("bert", "text-classification", tok.vocab_size), tok, tmp_path / "fast",
                               SENTENCES[:4], progress=False)
    png, js = tmp_path / "b.png", tmp_path / "b.json"
    rc = main(["bench", str(folder), "-b", "1", "2", "-s", "8", "16", "-n", "2", "--warmup", "0", "--threads", "1",
               "--plot", str(png), "--json", str(js), "-q"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    from hf_fast import openvino_baseline

    ov = openvino_baseline.available()  # the OpenVINO column when installed, else the note (test_bench_openvino.py)
    rts = ("native", "onnxruntime", "openvino", "pytorch") if ov else ("native", "onnxruntime", "pytorch")
    want = "| batch | seq | " + " | ".join(f"{rt} (ms)" for rt in rts) + " | native vs onnxruntime" + (
        " | native vs openvino |" if ov else " |")
    assert want in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(js.read_text())["rows"]
    assert {(r["runtime"], r["batch_size"], r["sequence_length"]) for r in rows} == {
        (rt, b, s) for rt in rts for b in (1, 2) for s in (8, 16)}
    assert main(["bench", str(folder), "-s", "999", "-q"]) == 1
    assert "exceeds" in capsys.readouterr().err


def _tiny_recipe(tmp_path, task):
    import yaml

    tok = tokenizer()
    ck = tmp_path / "ck"
    tiny_model("bert", task, tok.vocab_size, num_labels=2, max_pos=128).save_pretrained(ck)
    tok.save_pretrained(ck)
    if task == "question-answering":
        ctx = " ".join(SENTENCES)
        qas = [{"id": str(i), "question": f"which review says {s.split()[-1]}?",
                "answers": [{"text": s, "answer_start": ctx.index(s)}]} for i, s in enumerate(SENTENCES)]
        sq = tmp_path / "squad.json"
        sq.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": qas}]}]}))
        data = {"format": "squad-json", "train_path": str(sq), "eval_path": str(sq), "max_length": 64,
                "doc_stride": 16}
    else:
        d = tmp_path / "sst2"
        d.mkdir()
        for name, rows in (("train.tsv", SENTENCES * 2), ("dev.tsv", SENTENCES)):
            (d / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(rows)))
        data = {"format": "sst2-tsv", "path": str(d), "max_length": 32}
    recipe = {"name": "tiny",
              "task": "question-answering" if task == "question-answering" else "sequence-classification",
              "model": {"student": str(ck), "teacher": None, "num_labels": 2}, "data": data,
              "training_args": {"output_dir": "out/student", "per_device_train_batch_size": 8,
                                "learning_rate": 1e-3, "use_cpu": True, "disable_tqdm": True},
              "fast_config": {"sparsity": 0.5, "block": "4x1", "end_step": 0.5, "frequency": 1}}
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(recipe))
    return p


@pytest.mark.parametrize("task", ["text-classification", "question-answering"])
def test_train_cli_runs_a_recipe(tmp_path, capsys, task):
    recipe = _tiny_recipe(tmp_path, task)
    rc = main(["train", str(recipe), "--base-dir", str(tmp_path), "--max-steps", "2", "-q"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    metric = "f1" if task == "question-answering" else "accuracy"
    run = res["runs"]["student_distilled"]
    assert {"teacher_dense", "student_distilled"} == set(res["runs"])
    assert 0 <= run[metric] <= 100 and f"int8_native_{metric}" in run and f"int8_onnxruntime_{metric}" in run
    assert run["block"] == "4x1"
    folder = tmp_path / "out" / "student_distilled_fast"
    assert (folder / "model.onnx").is_file() and (folder / "model.safetensors").is_file()
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    names = {r.metric_name for r in card.data.eval_results}
    assert {f"{metric} (int8, hf-fast engine)", f"{metric} (int8, ONNX Runtime)", f"{metric} (fp32, PyTorch)"} <= names
    assert metric not in names  # the fp32 score once, under its fp32 name
    assert card.text.count("| sparsity_reached |") == 1 and "| sparsity |" not in card.text
    assert "Speed: not measured" in card.text  # hf-fast train times nothing unless --measure-speed
    assert "| student_distilled |" in (tmp_path / "out" / "report.md").read_text()
    assert main(["train", str(tmp_path / "missing.yaml")]) == 1


def test_export_smooth_quant_flag():
    p = build_parser()
    base = ["export", "--model", "m", "--out", "o"]
    assert p.parse_args(base).smooth_quant == "default"
    assert p.parse_args(base + ["--smooth-quant", "0.8"]).smooth_quant == 0.8
    assert p.parse_args(base + ["--smooth-quant", "none"]).smooth_quant is None
    for bad in ("1.5", "abc"):
        with pytest.raises(SystemExit):
            p.parse_args(base + ["--smooth-quant", bad])


def test_export_quantize_attention_flag(tmp_path, capsys):
    p = build_parser()
    base = ["export", "--model", "m", "--out", "o"]
    assert p.parse_args(base).quantize_attention is False
    assert p.parse_args(base + ["--quantize-attention"]).quantize_attention is True
    # the flag reaches hf_fast.export and lands in fast_config.json
    ck, cal = _checkpoint_and_calibration(tmp_path, "text-classification")
    for flag, on in (([], False), (["--quantize-attention"], True)):
        out = tmp_path / f"art-{on}"
        assert main(["export", "--model", str(ck), "--out", str(out), "--calibration", str(cal), "-q"] + flag) == 0, \
            capsys.readouterr().err
        q = json.loads((out / "fast_config.json").read_text())["quantization"]
        assert q["quantize_attention"] is on and q["num_quantized_attention_matmuls"] == (4 if on else 0)


# ------------------------------------------------------------------ --version, hints, early checks, progress
def test_version(capsys):
    import hf_fast

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"hf-fast {hf_fast.__version__}"


def _flags() -> set[str]:
    import argparse

    ap = build_parser()
    parsers = [ap] + list(ap._subparsers._group_actions[0].choices.values())
    return {o for p in parsers for a in p._actions if not isinstance(a, argparse._SubParsersAction)
            for o in a.option_strings}


def test_hints_name_only_flags_that_exist():
    """Every `--flag` the package's messages, docstrings and comments mention is a real flag: of `hf-fast`, or
    of the benchmark scripts' parsers that hf_fast.training.run_recipe.add_pruning_arguments fills."""
    import re
    from pathlib import Path

    import hf_fast

    flags = _flags()
    assert {"--overwrite", "--no-overwrite", "--version", "--calibration", "--measure-speed"} <= flags
    named = {}
    for f in Path(hf_fast.__file__).parent.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        flags |= set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", text))
        for m in re.finditer(r"(?<![\w-])--[a-z][a-z0-9-]*", text):
            named.setdefault(m.group(0), f.name)
    assert "--overwrite" in named and "--calibration" in named  # the pattern finds the hints
    assert {k: v for k, v in named.items() if k not in flags} == {}


def test_train_speed_is_opt_in():
    p = build_parser()
    assert p.parse_args(["train", "r.yaml"]).measure_speed is False
    assert p.parse_args(["train", "r.yaml", "--measure-speed"]).measure_speed is True
    assert p.parse_args(["train", "r.yaml", "--no-speed"]).measure_speed is False  # the old spelling still parses


def test_paths_checked_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """Bad --calibration / --out / --tokenizer / numbers fail with a clear message, without loading any model."""
    import hf_fast.bench
    import hf_fast.export

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the paths were checked")

    monkeypatch.setattr(hf_fast.export, "load_model_for_task", no_load)
    monkeypatch.setattr(hf_fast.bench, "bench_folder", no_load)
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("{}")  # enough for the early checks; never loaded
    cal = tmp_path / "cal.txt"
    cal.write_text("a sentence\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "bad.json").write_text("[1, 2")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    art = tmp_path / "art"
    art.mkdir()
    (art / "fast_config.json").write_text("{}")
    o = str(tmp_path / "o")
    cases = [
        (["-o", o, "--calibration", str(tmp_path / "missing.txt")], "missing.txt' does not exist"),
        (["-o", o, "--calibration", str(tmp_path)], "is a directory"),
        (["-o", o, "--calibration", str(tmp_path / "empty.txt")], "holds no samples"),
        (["-o", o, "--calibration", str(tmp_path / "bad.json")], "bad.json' cannot be read"),
        (["-o", str(tmp_path / "afile"), "--calibration", str(cal)], "is a file"),
        (["-o", str(tmp_path / "theirs"), "--calibration", str(cal), "--overwrite"],
         "refusing to replace unrelated files"),
        (["-o", str(art), "--calibration", str(cal)], "--overwrite"),
        (["-o", o, "--calibration", str(cal), "--tokenizer", str(tmp_path / "nope")], "--tokenizer"),
        (["-o", o, "--calibration", str(cal), "--num-calibration", "0"], "--num-calibration"),
        (["-o", o, "--calibration", str(cal), "--task", "translation"], "unsupported task"),
    ]
    for args, msg in cases:
        assert main(["export", "-m", str(ck), "-q"] + args) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("hf-fast export: error:") and msg in err, (args, err)
    with pytest.raises(AssertionError, match="loaded before"):  # all fine: reaches the (patched) loader
        main(["export", "-m", str(ck), "-q", "-o", o, "--calibration", str(cal)])
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "mine" and not (tmp_path / "o").exists()
    # bench: the output files are checked before measuring
    assert main(["bench", str(tmp_path / "nofolder"), "--json", str(tmp_path), "-q"]) == 1
    assert "--json" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "nofolder"), "--plot", str(tmp_path / "afile" / "b.png"), "-q"]) == 1
    assert "is a file" in capsys.readouterr().err


def test_export_overwrite_flag_and_progress(tmp_path, capsys):
    """An existing artifact is replaced only with --overwrite; the trace and quantize steps show progress on
    stderr, each bar closed (own line) before anything else is printed."""
    ck, cal = _checkpoint_and_calibration(tmp_path, "text-classification")
    out = tmp_path / "art"
    assert main(["export", "-m", str(ck), "-o", str(out), "--calibration", str(cal), "-q"]) == 0
    capsys.readouterr()
    before = (out / "fast_config.json").read_text()
    again = ["export", "-m", str(ck), "-o", str(out), "--calibration", str(cal), "--block", "1x4"]
    assert main(again + ["-q"]) == 1
    assert "--overwrite" in capsys.readouterr().err and (out / "fast_config.json").read_text() == before
    assert main(again + ["--overwrite"]) == 0
    cap = capsys.readouterr()
    assert json.loads((out / "fast_config.json").read_text())["block"] == "1x4"
    err = cap.err
    for name in ("ONNX trace (fp32)", "int8 calibration + quantization"):
        assert f"{name}: 00:0" in err and ", done\n" in err.split(name, 1)[1], err
    assert err.index("ONNX trace (fp32)") < err.index("int8 calibration + quantization")
    assert err.endswith("\n")  # the last bar is closed: what follows starts on a line of its own
    assert cap.out.startswith("wrote ")


def test_train_cli_latency_scope(tmp_path, capsys):
    """`hf-fast train --scope latency --target-speedup X --cost-file F`: the student meets the time target the cost
    file predicts, and results.json records the target and the prediction."""
    from test_training_latency import synthetic_costs

    recipe = _tiny_recipe(tmp_path, "text-classification")
    costs = synthetic_costs(tmp_path / "costs.json", dims=(32, 4, 64, 2))
    rc = main(["train", str(recipe), "--base-dir", str(tmp_path), "--max-steps", "4", "--skip-export", "-q",
               "--scope", "latency", "--target-speedup", "2", "--cost-file", costs, "--target-shape", "1,16"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    fc = res["fast_config"]
    assert fc["scope"] == "latency" and fc["target_speedup"] == 2.0 and fc["target_shape"] == [1, 16]
    assert fc["cost_file"] == costs
    run = res["runs"]["student_distilled"]
    from hf_fast.cost_curves import CostCurves

    target = CostCurves.load(costs).predict_ms(32, 4, 64, 2, "4x1") / 2.0  # the dense prediction over 2
    assert run["latency_target_ms"] == pytest.approx(target, rel=1e-3)
    assert 0.9 * target <= run["latency_predicted_ms"] <= target * (1 + 1e-3) and run["sparsity"] > 0.3


@pytest.mark.parametrize("flags, match", [
    (["--scope", "global", "--target-speedup", "2"], "--target-speedup applies to --scope latency, not --scope global"),
    (["--scope", "layer", "--cost-file", "c.json", "--target-shape", "1,16"],
     "--target-shape, --cost-file apply to --scope latency"),
    (["--scope", "latency"], "needs exactly one of target_speedup"),
    (["--scope", "latency", "--target-speedup", "2", "--target-latency-ms", "3"], "exactly one of target_speedup"),
    (["--scope", "latency", "--target-speedup", "0.5"], "must exceed 1"),
    (["--scope", "latency", "--target-speedup", "2", "--cost-file", "missing.json"], "missing.json"),
    (["--target-speedup", "2"], "target_speedup applies to scope='latency' \\(scope is 'global'\\)"),
    (["--scope", "latency", "--target-speedup", "2", "--min-layer-sparsity", "0.5"],
     "min_layer_sparsity applies to scope='global'"),
])
def test_train_cli_latency_flags_are_checked_before_training(tmp_path, capsys, monkeypatch, flags, match):
    """Wrong latency flags fail with a message naming the problem, before any model loads or trains."""
    import re

    import hf_fast.training.trainer

    def no_train(*a, **k):
        raise AssertionError("training started before the flags were checked")

    monkeypatch.setattr(hf_fast.training.trainer, "FastTrainer", no_train)
    monkeypatch.chdir(tmp_path)
    recipe = _tiny_recipe(tmp_path, "text-classification")
    assert main(["train", str(recipe), "--base-dir", str(tmp_path), "-q", *flags]) == 1
    assert re.search(match, capsys.readouterr().err)


def test_train_cli_target_shape_is_two_positive_ints(capsys):
    p = build_parser()
    assert p.parse_args(["train", "r.yaml", "--target-shape", "8x128"]).target_shape == (8, 128)
    for bad in ("128", "1,0", "a,b", "1,2,3"):
        with pytest.raises(SystemExit):
            p.parse_args(["train", "r.yaml", "--target-shape", bad])
        assert "--target-shape takes BATCH,SEQ" in capsys.readouterr().err


def test_scope_change_drops_the_recipes_global_floor():
    """--scope layer/latency on a recipe with a per-layer floor (recipes/minilm_rt_polarity.yaml has 0.6): the floor
    is dropped, since it applies to the global scope only; given on the command line it is kept (and refused)."""
    from pathlib import Path

    from hf_fast.training.run_recipe import pruning_overrides

    p = build_parser()
    ov = pruning_overrides(p.parse_args(["train", "r.yaml", "--scope", "latency", "--target-speedup", "3",
                                         "--target-shape", "1,128"]))
    assert ov == {"scope": "latency", "target_speedup": 3.0, "target_shape": [1, 128], "min_layer_sparsity": None,
                  "max_layer_sparsity": None}
    assert pruning_overrides(p.parse_args(["train", "r.yaml", "--scope", "layer", "--min-layer-sparsity", "0.5"])
                             )["min_layer_sparsity"] == 0.5
    assert pruning_overrides(p.parse_args(["train", "r.yaml"])) == {}
    from hf_fast.training.recipe import load_recipe

    repo = Path(__file__).resolve().parents[1]
    r = load_recipe(repo / "recipes" / "minilm_rt_polarity.yaml", base_dir=repo, overrides={
        "fast_config": pruning_overrides(p.parse_args(["train", "r.yaml", "--scope", "layer"]))})
    assert r.fast_config.scope == "layer" and r.fast_config.min_layer_sparsity is None


def test_train_cli_layer_weights_and_qat_reach_the_fast_config(capsys):
    """--layer-weights / --qat (issue 17's recipe knobs) land in fast_config, merged with --hidden-weight."""
    from pathlib import Path

    from hf_fast.training.recipe import load_recipe
    from hf_fast.training.run_recipe import pruning_overrides

    p = build_parser()
    ov = pruning_overrides(p.parse_args(["train", "r.yaml", "--hidden-weight", "2", "--layer-weights", "1,1,2",
                                         "--qat"]))
    assert ov == {"distill": {"hidden_weight": 2.0, "layer_weights": [1.0, 1.0, 2.0]}, "quantization": "qat"}
    repo = Path(__file__).resolve().parents[1]
    r = load_recipe(repo / "recipes" / "minilm_squad_part.yaml", base_dir=repo, overrides={"fast_config": ov})
    fc = r.fast_config
    assert fc.quantization == "qat" and fc.distill.layer_weights == {0: 1.0, 1: 1.0, 2: 2.0}
    assert fc.distill.hidden_weight == 2.0 and fc.distill.alpha == 0.9  # the recipe's other distill keys stay
    with pytest.raises(SystemExit):
        p.parse_args(["train", "r.yaml", "--layer-weights", "1,deep"])
    assert "one per student layer" in capsys.readouterr().err
