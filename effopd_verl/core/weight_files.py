"""Model weights on disk: read lazily from HF model folders or ``.safetensors`` files, write in shards.

A *weights source* is a ``Mapping[str, torch.Tensor]`` from parameter name to tensor. A plain state
dict is one; :class:`SafetensorsWeights` is one that reads a tensor from disk only when it is
looked up (``safetensors.safe_open``, one tensor at a time), so a whole model is never held in
memory. Pure torch + safetensors: imports neither verl nor ray.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

SAFETENSORS_INDEX = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# files of a model folder that hold weights; everything else (config, tokenizer, ...) is copied
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


class WeightsNotFound(FileNotFoundError):
    """A path that is not a ``.safetensors`` file or a model folder holding some."""


class SafetensorsWeights(Mapping[str, torch.Tensor]):
    """Read-only mapping name → tensor over one or more ``.safetensors`` files, read on lookup.

    ``shapes`` holds every tensor's shape, read from the file headers without loading data.
    """

    def __init__(self, files: Iterable[Path]):
        self.file_of: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for file in files:
            with safe_open(file, framework="pt") as f:
                for name in f.keys():
                    self.file_of[name] = Path(file)
                    self.shapes[name] = tuple(f.get_slice(name).get_shape())

    def __getitem__(self, name: str) -> torch.Tensor:
        with safe_open(self.file_of[name], framework="pt") as f:
            return f.get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.file_of)

    def __len__(self) -> int:
        return len(self.file_of)


def safetensors_files(path: str | Path) -> list[Path]:
    """The ``.safetensors`` files of ``path``: the file itself, or a folder's shards.

    A folder's files are those its ``model.safetensors.index.json`` names, else all its
    ``*.safetensors`` files.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise WeightsNotFound(f"{path} is not a .safetensors file")
        return [path]
    if not path.is_dir():
        raise WeightsNotFound(f"{path} does not exist")
    index = path / SAFETENSORS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / shard for shard in shards]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise WeightsNotFound(
            f"{path} holds no .safetensors files (save the model with "
            "save_pretrained(..., safe_serialization=True), or merge a verl checkpoint to HF first)"
        )
    return files


def open_weights(path: str | Path) -> SafetensorsWeights:
    """The weights of an HF model folder or a ``.safetensors`` file, read lazily."""
    return SafetensorsWeights(safetensors_files(path))


def tensor_shapes(weights: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, without reading tensor data from a :class:`SafetensorsWeights`."""
    if isinstance(weights, SafetensorsWeights):
        return dict(weights.shapes)
    return {name: tuple(tensor.shape) for name, tensor in weights.items()}


def write_safetensors_folder(
    out_dir: str | Path,
    named_tensors: Iterable[tuple[str, torch.Tensor]],
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> list[Path]:
    """Write tensors as HF does: ``model.safetensors``, or shards plus ``model.safetensors.index.json``.

    Tensors are consumed one at a time and at most one shard (``max_shard_bytes``, or one tensor if
    larger) is held in memory. Returns the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []  # temporary shard files, renamed once their count is known
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = total_bytes = 0
    shard_of: dict[str, int] = {}

    def flush(shard: dict[str, torch.Tensor]) -> None:
        written.append(out_dir / f"shard-{len(written):05d}.tmp")
        save_file(shard, written[-1], metadata={"format": "pt"})

    for name, tensor in named_tensors:
        size = tensor.numel() * tensor.element_size()
        if shard and shard_bytes + size > max_shard_bytes:
            flush(shard)
            shard, shard_bytes = {}, 0
        shard[name] = tensor.contiguous()
        shard_bytes += size
        total_bytes += size
        shard_of[name] = len(written)
    flush(shard)

    count = len(written)
    if count == 1:
        files = [out_dir / SINGLE_FILE]
    else:
        files = [out_dir / f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        index = {
            "metadata": {"total_size": total_bytes},
            "weight_map": {name: files[i].name for name, i in shard_of.items()},
        }
        (out_dir / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2))
    for temporary, file in zip(written, files):
        temporary.replace(file)
    return files


def copy_model_files(source: str | Path, out_dir: str | Path) -> list[Path]:
    """Copy a model folder's non-weight files (config, generation config, tokenizer) to ``out_dir``.

    ``source`` is the model folder or a ``.safetensors`` file inside one; nothing is copied from a
    folder without ``config.json``. Returns the files copied.
    """
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    if not (folder / "config.json").is_file():
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for file in sorted(folder.iterdir()):
        if file.is_file() and not file.name.endswith(WEIGHT_SUFFIXES) and file.name != SAFETENSORS_INDEX:
            copied.append(Path(shutil.copy2(file, out_dir / file.name)))
    return copied
