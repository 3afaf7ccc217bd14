"""Every format version ever written stays readable: one golden file per version."""

import json

import numpy as np
import pytest
from conftest import GOLDEN
from numpy.testing import assert_array_equal

import colprune as cp
from colprune.index import layout

# v<N>.h5, v<N>-<codec>.h5 (versions 1-2: one file); v<N>, v<N>-<codec> (version 3 on: a collection folder)
NAMES = sorted(p.stem if p.suffix == ".h5" else p.name for p in GOLDEN.glob("v*") if p.suffix == ".h5" or p.is_dir())


def golden(name: str):
    return GOLDEN / f"{name}.h5" if (GOLDEN / f"{name}.h5").exists() else GOLDEN / name


def test_current_version_has_golden_files_for_every_codec():
    v = layout.FORMAT_VERSION
    assert {f"v{v}", f"v{v}-merged"} | {f"v{v}-{c}" for c in layout.CODECS if c != "float16"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_reads_back_exactly(name, tmp_path):
    version = int(name.split("-")[0][1:])
    expect = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))
    with cp.Index.open(golden(name)) as index:
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
            if "covers" in want:
                assert [c.tolist() for c in page.covers] == want["covers"]
                for k, v in want["signals"].items():
                    assert_array_equal(page.signals[k], np.array(v, np.float32))
            if "vectors_f16_hex" in want:  # v1
                assert page.vectors.astype("<f2").tobytes().hex() == want["vectors_f16_hex"]
            else:
                assert page.vectors.astype("<f4").tobytes().hex() == want["vectors_f32_hex"]
        hits = index.search(index.get("alpha").vectors.astype(np.float32), k=2)
        assert hits[0].id == "alpha" and len(hits) == 2
        # an old file can still be the source of a new one
        derived = index.derive(tmp_path / "new.h5", "ratio", ratio=0.5)
        assert derived.format_version == layout.FORMAT_VERSION and len(derived) == len(expect["ids"])
        derived.close()
