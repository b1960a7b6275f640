import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HF_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _pack_cache_dir(tmp_path_factory):
    """The tests' packed-weight cache (hf_fast/runtime/pack_cache.py) lives in pytest's temp folder, not the user's."""
    old = os.environ.get("HF_FAST_CACHE_DIR")
    os.environ["HF_FAST_CACHE_DIR"] = str(tmp_path_factory.mktemp("hf_fast_cache"))
    yield
    if old is None:
        os.environ.pop("HF_FAST_CACHE_DIR", None)
    else:
        os.environ["HF_FAST_CACHE_DIR"] = old
