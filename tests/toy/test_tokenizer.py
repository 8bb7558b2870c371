"""The char-level tokenizer: round trip, chat template, special tokens, what verl's Qwen path needs."""

import pytest
from transformers import AutoTokenizer

from effopd_verl.toy.tokenizer import CHARS, build_tokenizer, prompt_messages
from effopd_verl.toy.train import Encoder


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_round_trip_one_token_per_character(tokenizer):
    text = CHARS + "rev:hello= 12+34=46\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids


def test_vocabulary_is_small_and_stable(tokenizer):
    assert 40 <= len(tokenizer) <= 64
    assert build_tokenizer().get_vocab() == tokenizer.get_vocab()


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    ids = tokenizer.encode("46<|im_end|>", add_special_tokens=False)
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "46"
    assert tokenizer.encode("", add_special_tokens=True) == []  # no BOS added


def test_chat_template(tokenizer):
    messages = prompt_messages("12+34=")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|user|>12+34=<|im_end|>\n<|assistant|>"
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": "46"}], tokenize=False)
    assert full == "<|user|>12+34=<|im_end|>\n<|assistant|>46<|im_end|>\n"
    system = tokenizer.apply_chat_template([{"role": "system", "content": "x"}] + messages, tokenize=False)
    assert system.startswith("<|system|>x<|im_end|>\n<|user|>")
    with pytest.raises(Exception, match="unsupported role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "1"}], tokenize=False)


def test_template_ids_equal_the_fast_encoder_used_for_training(tokenizer):
    enc = Encoder(tokenizer)
    for q in ["12+34=", "0+0=", "rev:abcdefgh="]:
        out = tokenizer.apply_chat_template(prompt_messages(q), add_generation_prompt=True, tokenize=True)
        ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
        assert list(ids) == enc.prompt(q)
    assert enc.answer("46") == tokenizer.encode("46<|im_end|>", add_special_tokens=False)


def test_saved_and_reloaded_with_auto_tokenizer(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    messages = prompt_messages("rev:abc=")
    assert loaded.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == (
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert (loaded.eos_token_id, loaded.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_verl_qwen_continuous_token_builder_accepts_it(tokenizer):
    """verl 0.9.1 picks its Qwen builder for model_type qwen3: it needs <|im_end|> and a one-token newline."""
    from verl.utils.tokenizer.continuous_token import QwenContinuousTokenBuilder

    builder = QwenContinuousTokenBuilder(tokenizer)
    assert builder.build_initial_tokens(prompt_messages("12+34=")) == Encoder(tokenizer).prompt("12+34=")
