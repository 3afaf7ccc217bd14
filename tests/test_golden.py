"""Every format version ever written stays readable: one golden file per version."""

import json

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import colprune as cp
from colprune.index import layout

from conftest import GOLDEN

VERSIONS = sorted(int(p.stem[1:]) for p in GOLDEN.glob("v*.h5"))


def test_current_version_has_a_golden_file():
    assert layout.FORMAT_VERSION in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_file_reads_back_exactly(version, tmp_path):
    expect = json.loads((GOLDEN / f"v{version}.json").read_text(encoding="utf-8"))
    with cp.Index.open(GOLDEN / f"v{version}.h5") as index:
        assert index.format_version == version
        assert index.ids == expect["ids"]
        assert (index.dim, index.dtype, index.encoder) == (expect["dim"], expect["dtype"], expect["encoder"])
        assert index.pruner_config == expect["pruner"]
        for doc_id, want in zip(expect["ids"], expect["pages"]):
            page = index.get(doc_id)
            assert page.positions.tolist() == want["positions"]
            assert page.n_original == want["n_original"]
            assert page.grid == (None if want["grid"] is None else tuple(want["grid"]))
            assert page.metadata == want["metadata"]
            assert page.patch_mask.tolist() == want["patch_mask"]
            assert_array_equal(page.importance, np.array(want["importance"], np.float32))
            assert page.vectors.astype("<f2").tobytes().hex() == want["vectors_f16_hex"]
        hits = index.search(index.get("alpha").vectors.astype(np.float32), k=2)
        assert hits[0].id == "alpha"
        # an old file can still be the source of a new one
        derived = index.derive(tmp_path / "new.h5", "ratio", ratio=0.5)
        assert derived.format_version == layout.FORMAT_VERSION and len(derived) == len(expect["ids"])
        derived.close()
