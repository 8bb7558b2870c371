"""Lazy reading and sharded writing of safetensors weights."""

import json

import pytest
import torch
from safetensors.torch import save_file

from effopd_verl.core.weight_files import (
    SafetensorsWeights,
    WeightsNotFound,
    copy_model_files,
    open_weights,
    tensor_shapes,
    write_safetensors_folder,
)

TENSORS = {
    "a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
    "b.weight": torch.ones(5, dtype=torch.bfloat16),
    "c.weight": torch.zeros(2, 2, dtype=torch.float16),
}


@pytest.mark.parametrize("max_shard_bytes, files", [(10**9, ["model.safetensors"]), (40, None)])
def test_written_folder_reads_back_lazily(tmp_path, max_shard_bytes, files):
    written = write_safetensors_folder(tmp_path, TENSORS.items(), max_shard_bytes=max_shard_bytes)
    if files:
        assert [f.name for f in written] == files
    else:  # 48 + 10 + 8 bytes over 40-byte shards: a.weight alone, then b and c together
        assert [f.name for f in written] == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["weight_map"] == {
            "a.weight": written[0].name, "b.weight": written[1].name, "c.weight": written[1].name,
        }
        assert index["metadata"]["total_size"] == 66
    assert not list(tmp_path.glob("*.tmp"))
    weights = open_weights(tmp_path)
    assert isinstance(weights, SafetensorsWeights) and sorted(weights) == sorted(TENSORS)
    assert tensor_shapes(weights) == {"a.weight": (3, 4), "b.weight": (5,), "c.weight": (2, 2)}
    for name, tensor in TENSORS.items():
        assert torch.equal(weights[name], tensor) and weights[name].dtype == tensor.dtype


def test_a_single_file_and_state_dict_shapes(tmp_path):
    save_file(TENSORS, tmp_path / "w.safetensors")
    assert torch.equal(open_weights(tmp_path / "w.safetensors")["a.weight"], TENSORS["a.weight"])
    assert tensor_shapes(TENSORS)["a.weight"] == (3, 4)


def test_paths_without_safetensors_are_refused(tmp_path):
    with pytest.raises(WeightsNotFound, match="does not exist"):
        open_weights(tmp_path / "missing")
    with pytest.raises(WeightsNotFound, match="holds no .safetensors files"):
        open_weights(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(WeightsNotFound, match="is not a .safetensors file"):
        open_weights(tmp_path / "pytorch_model.bin")


def test_copy_model_files_copies_config_and_tokenizer_not_weights(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ["config.json", "tokenizer.json", "generation_config.json", "model.safetensors",
                 "model.safetensors.index.json", "pytorch_model.bin"]:
        (model / name).write_text("{}")
    copied = copy_model_files(model / "model.safetensors", tmp_path / "out")
    assert sorted(f.name for f in copied) == ["config.json", "generation_config.json", "tokenizer.json"]
    (tmp_path / "loose").mkdir()
    assert copy_model_files(tmp_path / "loose", tmp_path / "out2") == []
