"""CPU detection, HF_FAST_ISA override and native_info()."""
import json
import os
import subprocess
import sys

import pytest

import hf_fast
from hf_fast import native


def _info_with_env(value):
    env = dict(os.environ, HF_FAST_ISA=value)
    code = "import json, hf_fast; print(json.dumps(hf_fast.native_info()))"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_native_info_reports_isa_and_kernels():
    info = hf_fast.native_info()
    assert info["isa"] in native.ISA_NAMES
    assert "ref" in info["supported_isas"]
    assert info["isa"] in info["supported_isas"]
    assert set(info["kernels"]["dense_u8s8s32_gemm"]) == set(info["supported_isas"])
    for fam in ("attention_f32", "attention_int8", "layernorm"):
        assert set(info["kernels"][fam]) == set(info["supported_isas"]), fam


def test_auto_picks_the_best_supported_isa():
    with native.use_isa("auto"):
        assert native.active_isa() == native.supported_isas()[-1]


@pytest.mark.parametrize("isa", native.supported_isas())
def test_env_var_forces_each_supported_path(isa):
    r = _info_with_env(isa)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["isa"] == isa and info["isa_forced_by_env"] == isa


def test_env_var_with_unknown_name_fails_clearly():
    r = _info_with_env("sse9")
    assert r.returncode != 0
    assert "HF_FAST_ISA='sse9'" in r.stderr


def test_use_isa_restores_previous_choice():
    before = native.active_isa()
    with native.use_isa("ref"):
        assert native.active_isa() == "ref"
    assert native.active_isa() == before
