"""The colpali-engine adapter on a tiny config-built ColQwen2.5 (colpali-engine's own class)."""

import numpy as np
import pytest
import torch
from conftest import shared_path
from numpy.testing import assert_allclose

from colprune.encoders import ColpaliEngineEncoder, collect_pages
from colprune.encoders.colpali_engine import import_skipping_init, language_attention_layers
from colprune.errors import InvalidInputError


@pytest.fixture(scope="module")
def tiny():
    try:
        mod = import_skipping_init("colpali_engine", "models.qwen2_5.colqwen2_5.modeling_colqwen2_5")
    except ImportError:
        pytest.skip("colpali-engine is not installed (pip install --no-deps colpali-engine)")
    from transformers.models.qwen2_5_vl import Qwen2_5_VLConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(0)
    cfg = Qwen2_5_VLConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, image_token_id=5, vision_start_token_id=3, vision_end_token_id=4,
        rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
        vision_config=dict(depth=1, hidden_size=32, out_hidden_size=32, intermediate_size=64, num_heads=2,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                           window_size=56, fullatt_block_indexes=[0]),
    )
    cfg._attn_implementation = "eager"
    return mod.ColQwen2_5(cfg).eval(), Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=224 * 224)


def inputs_for(image_processor, image):
    px = image_processor(images=[image.convert("RGB")], return_tensors="pt")
    n_img = int(px["image_grid_thw"][0].prod()) // 4
    ids = torch.tensor([[1, 2, 3] + [5] * n_img + [4, 6, 7, 0]])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
            "pixel_values": px["pixel_values"].unsqueeze(0), "image_grid_thw": px["image_grid_thw"]}


def test_adapter_reads_eos_attention_of_colpali_engine_models(tiny):
    model, ip = tiny
    image = collect_pages([str(shared_path("data", "pages", "arxivqa", "images", "0.png"))])[0].image()
    batch = inputs_for(ip, image)
    enc = ColpaliEngineEncoder(model, None, name="tiny-colqwen2.5")
    assert enc.image_token_id == 5 and [i for i, _ in language_attention_layers(model)] == [0, 1, 2, 3]
    page = enc.encode_batch(batch)[0]
    n_patch = int((batch["input_ids"][0] == 5).sum())
    assert page.patch_mask.sum() == n_patch and page.grid[0] * page.grid[1] == n_patch
    assert page.vectors.shape == (batch["input_ids"].shape[1], 128)
    assert_allclose(np.linalg.norm(page.vectors, axis=1), 1.0, rtol=1e-5)
    # the same attention as the backbone returns when asked for it
    from transformers.models.qwen2_5_vl import Qwen2_5_VLModel

    offsets = batch["image_grid_thw"][:, 1] * batch["image_grid_thw"][:, 2]
    flat = torch.cat([p[:o] for p, o in zip(batch["pixel_values"], offsets)])
    with torch.no_grad():
        ref = Qwen2_5_VLModel.forward(model, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                      pixel_values=flat, image_grid_thw=batch["image_grid_thw"], output_attentions=True)
    last = ref.attentions[-1][0].mean(dim=0).numpy()
    assert_allclose(page.signals["eos"], last[-1], rtol=1e-5, atol=1e-7)
    assert_allclose(page.importance, page.signals["eos"])


def test_adapter_refuses_non_eager_models(tiny):
    model, _ = tiny
    model.config._attn_implementation = "sdpa"
    try:
        with pytest.raises(InvalidInputError, match="eager"):
            ColpaliEngineEncoder(model, None)
    finally:
        model.config._attn_implementation = "eager"
