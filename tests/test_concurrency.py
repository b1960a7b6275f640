"""Concurrency (issue 7): one loaded model shared by 8 Python threads gives the serial results bit for bit;
two models in one process run side by side; the GIL is released while the native engine runs."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _fuzz_helpers import VOCAB, valid_inputs, watchdog

from hf_fast import native

THREADS = 8


@pytest.fixture(scope="module")
def arts(micro_artifacts):
    return micro_artifacts  # bert text-classification, distilbert question-answering


def _batches(arch, n=24):
    # different shapes per call, so concurrent calls also race on the engine's workspace size
    return [valid_inputs(arch, b=1 + i % 5, s=3 + (i * 7) % 14, seed=i) for i in range(n)]


def _run_threads(fn, items):
    barrier = threading.Barrier(THREADS)

    def work(chunk):
        barrier.wait()  # all threads start together
        return [fn(x) for x in chunk]

    chunks = [items[i::THREADS] for i in range(THREADS)]
    with watchdog(120), ThreadPoolExecutor(THREADS) as ex:
        results = list(ex.map(work, chunks))
    out = [None] * len(items)
    for i, res in enumerate(results):
        out[i::THREADS] = res
    return out


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
@pytest.mark.parametrize("pool_threads", [1, 2])
def test_one_model_eight_threads_matches_serial(arts, backend, pool_threads):
    from hf_fast.runtime.modeling import load_fast_model

    m = load_fast_model(arts["bert"], backend=backend)
    items = _batches("bert") * 3
    with native.num_threads(pool_threads):
        serial = [m.run(**x)["logits"] for x in items]
        for _ in range(3):
            par = _run_threads(lambda x: m.run(**x)["logits"], items)
            for s, p in zip(serial, par, strict=False):
                np.testing.assert_array_equal(p, s)


def test_two_models_in_one_process(arts):
    from hf_fast.runtime.modeling import load_fast_model

    a = load_fast_model(arts["bert"])
    b = load_fast_model(arts["distilbert"])
    items = [("a", x) for x in _batches("bert", 16)] + [("b", x) for x in _batches("distilbert", 16)]

    def call(item):
        which, x = item
        if which == "a":
            return a.run(**x)["logits"]
        out = b.run(input_ids=x["input_ids"], attention_mask=x["attention_mask"])
        return np.stack([out["start_logits"], out["end_logits"]])

    serial = [call(i) for i in items]
    par = _run_threads(call, items[::2] + items[1::2])
    par = dict(zip(range(len(items)), par, strict=False))
    order = list(range(0, len(items), 2)) + list(range(1, len(items), 2))
    for k, idx in enumerate(order):
        np.testing.assert_array_equal(par[k], serial[idx])


def test_gil_is_released_while_the_engine_runs(tmp_path):
    """A Python thread keeps counting while another thread sits inside one long hf_engine_run call."""
    from _export_helpers import tiny_model
    from _fuzz_helpers import micro_calibration

    from hf_fast.export import export
    from hf_fast.runtime.modeling import load_fast_model

    m = tiny_model("bert", "text-classification", VOCAB, layers=2, hidden=128, heads=4, ffn=512, max_pos=128)
    d = export(m, None, tmp_path / "a", calibration_dataset=micro_calibration("bert"), progress=False)
    fm = load_fast_model(d)
    x = valid_inputs("bert", b=96, s=128)  # ~30 ms in one call (the engine is fast on this tiny model)
    with native.num_threads(1):
        fm.run(**x)  # warm-up (workspace)
        t0 = time.perf_counter()
        fm.run(**x)
        one = time.perf_counter() - t0
        ticks, stop = [], threading.Event()

        def counter():
            while not stop.is_set():
                ticks.append(time.perf_counter())

        window = {}

        def engine():
            window["t0"] = time.perf_counter()
            fm.backend.engine.run(x["input_ids"], x["attention_mask"], x["token_type_ids"])
            window["t1"] = time.perf_counter()

        th = threading.Thread(target=counter)
        th.start()
        time.sleep(0.01)
        with watchdog(120):
            e = threading.Thread(target=engine)
            e.start()
            e.join()
        stop.set()
        th.join()
    inside = [t for t in ticks if window["t0"] < t < window["t1"]]
    dur = window["t1"] - window["t0"]
    # with the GIL held for the whole C call the counter would be frozen for `dur`; released, it keeps
    # going (the GIL switch interval is 5 ms, so a held GIL would allow at most a couple of ticks)
    print(f"\nengine call {dur * 1e3:.0f} ms (alone {one * 1e3:.0f} ms); counter ticks during it: {len(inside)}")
    assert dur > 0.02, "the engine call is too short to show anything"
    gaps = np.diff([window["t0"]] + inside + [window["t1"]])
    assert len(inside) > 100 and gaps.max() < dur / 2, (len(inside), gaps.max(), dur)
