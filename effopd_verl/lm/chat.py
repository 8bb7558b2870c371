"""Prompts of the real LM: its own chat template, with an empty system message.

SmolLM2's template inserts a 16-token default system prompt ("You are a helpful AI assistant named
SmolLM, ...") unless the chat starts with a system message; an empty one keeps a prompt to the
question plus 14 template tokens. :class:`ChatEncoder` gives the token ids verl's rollout sees
(``apply_chat_template`` on the same messages), with the interface of
:class:`effopd_verl.toy.train.Encoder`, so the toy's supervised training and greedy evaluation run
on the real model as they are.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def prompt_messages(question: str) -> list[dict[str, str]]:
    """The chat messages of one prompt (what the parquet ``prompt`` column holds)."""
    return [{"role": "system", "content": ""}, {"role": "user", "content": question}]


class ChatEncoder:
    """Token ids of prompts (chat template, generation prompt) and answers (the answer's tokens, then EOS)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        if self.eos_id is None or self.pad_id is None:
            raise ValueError("the tokenizer needs eos and pad tokens (effopd_verl.lm.base sets both to <|im_end|>)")

    def prompt(self, question: str) -> list[int]:
        return list(self.tokenizer.apply_chat_template(
            prompt_messages(question), add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])

    def answer(self, answer: str) -> list[int]:
        return self.tokenizer.encode(answer, add_special_tokens=False) + [self.eos_id]
