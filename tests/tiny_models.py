"""Tiny ColQwen2 and ColPali checkpoints built from configs in code (random weights, no hub).

    python tests/tiny_models.py DIR          # writes DIR/colqwen2 and DIR/colpali

Real architectures and processors (word-level tokenizers built here, Pillow image
processors), a few layers of hidden size 32: enough to run the real encoder code on real page
images, fast, offline.
"""

from __future__ import annotations

import os
import sys

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

WORDS = "describe Describe the image image. query: Query: who what where is a an of in to and figure plot".split()


def _tokenizer(specials: list[str], **kwargs) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + WORDS + ["\n"]))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", **kwargs)


def save_tiny_colqwen2(path: str, seed: int = 0) -> str:
    import torch
    from transformers.models.colqwen2 import ColQwen2Config, ColQwen2ForRetrieval, ColQwen2Processor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    torch.manual_seed(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<unk>"]
    tok = _tokenizer(specials, pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    # 56..448 px per side: a page becomes at most 16 x 16 merged patches
    proc = ColQwen2Processor(image_processor=Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=448 * 448), tokenizer=tok)
    v = tok.get_vocab()
    cfg = ColQwen2Config(
        vlm_config=dict(
            model_type="qwen2_vl", vocab_size=len(v), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, image_token_id=v["<|image_pad|>"],
            vision_start_token_id=v["<|vision_start|>"], vision_end_token_id=v["<|vision_end|>"],
            bos_token_id=v["<|endoftext|>"], eos_token_id=v["<|endoftext|>"],
            rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]},
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                               spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        ),
        embedding_dim=16,
    )
    ColQwen2ForRetrieval(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


def save_tiny_colpali(path: str, seed: int = 0) -> str:
    import torch
    from transformers.models.colpali import ColPaliConfig, ColPaliForRetrieval, ColPaliProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(seed)
    tok = _tokenizer(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], pad_token="<pad>", eos_token="<eos>",
                     bos_token="<bos>", extra_special_tokens={"image_token": "<image>"})
    ip = SiglipImageProcessorPil(size={"height": 112, "width": 112})
    ip.image_seq_length = 64  # (112 / 14)^2 patches: an 8 x 8 grid
    proc = ColPaliProcessor(image_processor=ip, tokenizer=tok)
    v = tok.get_vocab()
    cfg = ColPaliConfig(
        vlm_config=dict(
            model_type="paligemma", vocab_size=len(v), image_token_index=v["<image>"], projection_dim=32,
            text_config=dict(model_type="gemma", vocab_size=len(v), hidden_size=32, intermediate_size=64,
                             num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
                             pad_token_id=v["<pad>"], bos_token_id=v["<bos>"], eos_token_id=v["<eos>"]),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=1, num_attention_heads=2, image_size=112, patch_size=14),
        ),
        embedding_dim=16,
    )
    ColPaliForRetrieval(cfg).save_pretrained(path)
    proc.save_pretrained(path)
    return path


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tiny-models"
    print(save_tiny_colqwen2(os.path.join(out, "colqwen2")))
    print(save_tiny_colpali(os.path.join(out, "colpali")))
