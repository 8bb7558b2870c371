"""The toy tokenizer: one token per character, plus ChatML-style special tokens.

Built with the ``tokenizers`` library (no download) and wrapped as a transformers fast tokenizer.
``<|im_end|>`` ends every turn and is the EOS token (generation stops there); ``<|endoftext|>``
pads. Role markers are single special tokens, which keeps prompts short (``12+34=`` is 9 tokens
with its template). verl 0.9.1 infers a Qwen "continuous token" builder from ``model_type: qwen3``;
it requires ``<|im_end|>`` to be a token and ``"\\n"`` to encode to one token, both true here.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
UNK_TOKEN = "<unk>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD_TOKEN, EOS_TOKEN, *ROLE_TOKENS.values(), UNK_TOKEN]
CHARS = "0123456789abcdefghijklmnopqrstuvwxyz+-*=?:,. \n"

# Each message renders as <|role|>content<|im_end|>\n; the generation prompt is <|assistant|>.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('toy chat template: unsupported role ' ~ message['role']) }}"
    "{%- endif -%}"
    "{{ '<|' ~ message['role'] ~ '|>' ~ message['content'] ~ '<|im_end|>' ~ '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)

MODEL_MAX_LENGTH = 64


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer; identical vocabulary (ids) on every call."""
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *CHARS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="left",
    )


def prompt_messages(question: str) -> list[dict[str, str]]:
    """The chat messages of one prompt (what the parquet ``prompt`` column holds)."""
    return [{"role": "user", "content": question}]
