from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# no network here: fail fast instead of retrying hub look-ups
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/, skipping the test when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} is absent (../shared/ holds the test data; see shared/README.md)")
    return p


def ragged_store(rng: np.random.Generator, lengths, dim: int = 16, dtype=np.float32):
    """CSR store with the given per-document lengths."""
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    vectors = rng.standard_normal((int(offsets[-1]), dim)).astype(dtype)
    return vectors, offsets


def write_pdf(path, pages, size=(8, 11)) -> None:
    """A PDF at ``path`` with one page per text of ``pages`` (a text layer; "" or None: a page without one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        for text in pages:
            fig = plt.figure(figsize=size)
            if text:
                fig.text(0.1, 0.9, text)
            pdf.savefig(fig)
            plt.close(fig)


def pages(rng: np.random.Generator, n: int, dim: int = 16, lo: int = 1, hi: int = 40):
    embs = [rng.standard_normal((int(m), dim)).astype(np.float32) for m in rng.integers(lo, hi, n)]
    imps = [rng.random(e.shape[0]).astype(np.float32) for e in embs]
    return [f"doc-{i}" for i in range(n)], embs, imps


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _serve_registry(tmp_path_factory, monkeypatch):
    """`colprune serve` notes itself for `colprune search`: in tests under a temporary folder, never the user's."""
    monkeypatch.setenv("COLPRUNE_SERVE_DIR", str(tmp_path_factory.getbasetemp() / "serve-registry"))


@pytest.fixture
def index_opens(monkeypatch) -> list[str]:
    """Every ``Index.open`` made during the test, by mode."""
    import colprune as cp

    opened: list[str] = []
    real = cp.Index.open.__func__

    def counting(cls, path, mode="r", **kw):
        opened.append(mode)
        return real(cls, path, mode, **kw)

    monkeypatch.setattr(cp.Index, "open", classmethod(counting))
    return opened


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (kill -9 rounds, fuzzing)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long fault-injection rounds; run with --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow") or os.environ.get("COLPRUNE_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (or COLPRUNE_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
