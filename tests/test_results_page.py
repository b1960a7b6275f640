"""benchmarks/RESULTS.md, its machine-readable twin results/current.json, the plot, and the links between the pages:
the figures a user reads must be the ones the JSON and the plot hold, with the same commands, and every link must
land on a heading that exists."""
import importlib.util
import json
import re
from pathlib import Path

import pytest
from _script_loader import load_script

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
RESULTS = BENCH / "RESULTS.md"
CURRENT = BENCH / "results" / "current.json"
PAGES = [REPO / "README.md", RESULTS, BENCH / "HISTORY.md"]


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (word characters, '-', spaces kept), spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6} (.+)$", line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(f"{s}-{n}" if n else s)
    return out


def flat(text: str) -> str:
    """Commands as one line: shell continuations and line breaks inside prose folded to single spaces."""
    return re.sub(r"\s+", " ", text.replace("\\\n", " "))


def test_slug_follows_github():
    assert slug("80% sparse, int8-attention export: 4x met (2026-11-26, session 8)") == \
        "80-sparse-int8-attention-export-4x-met-2026-11-26-session-8"
    assert slug("2026-11-26 02:38 - 05:20 (session 8) — base-2 softmax") == \
        "2026-11-26-0238---0520-session-8--base-2-softmax"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = page.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links or page.name == "HISTORY.md"
    bad = []
    for link in links:
        if re.match(r"^[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            bad.append(f"{link}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(f"{link}: no heading with anchor #{anchor} in {path.name}")
    assert not bad, "\n".join(bad)


def test_results_page_shows_the_json_figures_with_their_commands():
    data = json.loads(CURRENT.read_text(encoding="utf-8"))
    page = flat(RESULTS.read_text(encoding="utf-8"))
    missing = []
    for e in data["speed"]:
        for key in ("date", "session", "command", "history", "export", "baseline"):
            assert e.get(key), f"speed entry {e['id']} has no {key}"
        if flat(e["command"]) not in page:
            missing.append(f"{e['id']}: command {e['command']!r}")
        for c in e["cells"]:
            if f"{c['speedup']:.2f}x" not in page:
                missing.append(f"{e['id']} {c['shape']} {c['threads']} thr: {c['speedup']:.2f}x")
            for key in ("engine_ms", "ort_ms"):
                if key in c and f"{c[key]:.2f}" not in page:
                    missing.append(f"{e['id']} {c['shape']} {c['threads']} thr: {key} {c[key]:.2f}")
    grid = data["grid_1_thread"]
    if flat(grid["command"]) not in page:
        missing.append(f"grid command {grid['command']!r}")
    for row in grid["rows"]:
        for ms, x in zip(row["engine_ms"], row["speedup"], strict=True):
            if f"{ms:.2f} / " not in page or f"{x:.2f}x" not in page:
                missing.append(f"grid {row['sparsity']:.0%}: {ms:.2f} ms / {x:.2f}x")
    for e in data["accuracy"]:
        for key, cmd in e.items():
            if key.endswith("command") and flat(cmd) not in page:
                missing.append(f"{e['id']}: {key} {cmd!r}")
    assert not missing, "RESULTS.md lacks:\n" + "\n".join(missing)


def test_every_readme_results_row_names_a_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Results\s*$(.*?)(?=^## )", readme, re.M | re.S).group(1)
    rows = [r for r in section.splitlines() if r.startswith("| ") and not r.startswith("| what")]
    assert rows
    for row in rows:
        assert "](benchmarks/RESULTS.md#" in row.split("|")[-2], f"no command link in the last column: {row[:80]}"


def test_plot_script_draws_every_speed_entry(tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("plot_results", BENCH / "plot_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.plot(mod.load(CURRENT), tmp_path / "p.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (BENCH / "engine_vs_onnxruntime.png").is_file()  # the committed plot RESULTS.md shows
    bad = json.loads(CURRENT.read_text(encoding="utf-8"))
    del bad["speed"][0]["command"]
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(ValueError, match="has no 'command'"):
        mod.load(tmp_path / "bad.json")


def _history_log():
    return load_script(BENCH / "history_log.py")


def test_history_log_appends_at_the_end_of_its_section_and_keeps_everything(tmp_path):
    log = _history_log()
    nb = tmp_path / "HISTORY.md"
    old = "# H\n\n## Kernels (issue 4)\n\n### 2026-11-25 — a\n\nrow a\n\n## Exporter round trip (issue 3)\n\nx\n"
    nb.write_text(old, encoding="utf-8")
    log.append_entry("## Kernels (issue 4)", "### 2026-12-06 — b\n\nrow b\n", nb)
    new = nb.read_text(encoding="utf-8")
    assert new == old.replace("row a\n\n## Exporter", "row a\n\n### 2026-12-06 — b\n\nrow b\n\n## Exporter")
    log.append_entry("## Exporter round trip (issue 3)", "### c\n", nb)  # the last section
    assert nb.read_text(encoding="utf-8") == new + "\n### c\n"
    log.append_entry("## New topic", "### d\n", nb)  # a section not there yet goes at the end
    assert nb.read_text(encoding="utf-8").endswith("x\n\n### c\n\n## New topic\n\n### d\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HISTORY.md"]  # no temporary file left
    with pytest.raises(ValueError, match="'## ' heading"):
        log.append_entry("Kernels", "### e\n", nb)


def test_benchmark_scripts_write_to_the_notebook_not_the_results_page():
    """bench_gemm.py and export_roundtrip.py --write-results append dated entries to HISTORY.md; RESULTS.md holds
    only the current figures (before the split they rewrote RESULTS.md, export_roundtrip its whole section)."""
    log = _history_log()
    assert log.HISTORY == BENCH / "HISTORY.md"
    for script in ("bench_gemm.py", "export_roundtrip.py"):
        src = (BENCH / script).read_text(encoding="utf-8")
        assert "from history_log import append_entry" in src and "append_entry(SECTION" in src, script
        assert '"RESULTS.md"' not in src, script
