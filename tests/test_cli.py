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


def test_export_cli(tmp_path, capsys):
    tok = tokenizer()
    ck = tmp_path / "ck"
    tiny_model("distilbert", "token-classification", tok.vocab_size).save_pretrained(ck)
    tok.save_pretrained(ck)
    cal = tmp_path / "cal.txt"
    cal.write_text("\n".join(SENTENCES) + "\n")
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
    qa = tmp_path / "qa"
    tiny_model("bert", "question-answering", tok.vocab_size).save_pretrained(qa)
    tok.save_pretrained(qa)
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"paragraphs": [{"context": " ".join(SENTENCES), "qas": [
        {"question": s, "id": str(i), "answers": []} for i, s in enumerate(SENTENCES[:5])]}]}]}))
    assert main(["export", "--model", str(qa), "--task", "qa", "--out", str(tmp_path / "qa-art"),
                 "--calibration", str(squad), "-q"]) == 0
    assert json.loads((tmp_path / "qa-art" / "fast_config.json").read_text())["quantization"]["calibration_size"] == 5
