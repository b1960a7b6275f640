"""Progress of the export steps that report none of their own (the ONNX trace, ONNX Runtime's quantize_static).

    with step("ONNX trace (fp32)", enabled=progress):
        torch.onnx.export(...)

Each step is one tqdm line whose elapsed time ticks while the step runs (a daemon thread refreshes it) and
that stays on screen with the step's total time once it is done. Nested bars (the calibration batches) take the
line below it. Everything goes through tqdm, so no other line is glued to a bar.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

REFRESH_S = 0.5


@contextlib.contextmanager
def step(desc: str, enabled: bool = True, refresh_s: float = REFRESH_S) -> Iterator[Any]:
    """Show ``desc: <elapsed>`` while the block runs and ``desc: <elapsed>, done`` (or ``failed``) after it;
    yields the tqdm bar (None when not ``enabled``)."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=1, desc=desc, bar_format="{desc}: {elapsed}{postfix}", leave=True)
    stop = threading.Event()

    def tick():
        while not stop.wait(refresh_s):
            bar.refresh()

    ticker = threading.Thread(target=tick, name=f"hf-fast progress: {desc}", daemon=True)
    ticker.start()
    status = "failed"
    try:
        yield bar
        status = "done"
    finally:
        stop.set()
        ticker.join()
        bar.set_postfix_str(status, refresh=False)
        bar.update(1)
        bar.close()
