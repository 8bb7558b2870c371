"""Fixtures of the CPU-backend tests: a tiny random Qwen3 for the engine's unit tests (the toy task
of the end-to-end runs is tests/conftest.py's ``toy_assets``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

VOCAB = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *"0123456789+=? \nabcdefghijklmnopqrstuvwxyz:", "[UNK]"]
EOS_ID = VOCAB.index("<|im_end|>")
PAD_ID = 0


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen3ForCausalLM with a character tokenizer (chat template included)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    out = tmp_path_factory.mktemp("tiny_qwen3")
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=256, tie_word_embeddings=True,
        eos_token_id=EOS_ID, pad_token_id=PAD_ID, bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    with torch.no_grad():  # larger logits than the default init: sampled text is not uniform noise
        for p in model.parameters():
            p.mul_(4.0) if p.dim() > 1 else None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
