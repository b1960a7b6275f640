import os
from pathlib import Path

import pytest
from hub_server import hub, hub_server  # noqa: F401  (pytest fixtures: the local Hub server, see hub_server.py)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HF_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA
