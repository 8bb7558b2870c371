"""The toy model: a tiny Qwen3ForCausalLM (a few hundred thousand parameters) over the toy tokenizer.

Teacher and student share this architecture and the tokenizer, so verl's standard Qwen3 code
paths (FSDP wrapping, rollout, weight sync) apply unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GenerationConfig, PreTrainedTokenizerBase, Qwen3Config


@dataclass(frozen=True)
class ModelSize:
    """Architecture knobs (the rest is Qwen3's default)."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 32
    max_position_embeddings: int = 64


def make_config(tokenizer: PreTrainedTokenizerBase, size: ModelSize = ModelSize()) -> Qwen3Config:
    """A Qwen3 config whose vocabulary is exactly the tokenizer's (tied input/output embeddings)."""
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim,
        max_position_embeddings=size.max_position_embeddings,
        max_window_layers=size.num_hidden_layers,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_cache=True,
    )


def make_generation_config(tokenizer: PreTrainedTokenizerBase, max_new_tokens: int = 32) -> GenerationConfig:
    """Greedy by default; stops at ``<|im_end|>``; room for 32 new tokens (callers pass their own)."""
    return GenerationConfig(
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=max_new_tokens,
    )
