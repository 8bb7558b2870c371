"""effopd-analyze end to end on a tiny Qwen3 and three perturbed checkpoints of it."""

import doctest
import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM

from effopd_verl.cli import analyze
from effopd_verl.cli.analyze import main
from effopd_verl.core.diagnostics import matrix_update_stats, update_alignment
from effopd_verl.core.weight_files import open_weights

METRICS = {"spectral_norm", "spectral_frobenius_ratio", "effective_rank", "top1pct_norm_ratio", "bf16_sparsity"}
STEPS = (10, 50, 100)


def tiny_qwen3(hidden_size=32) -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=96, hidden_size=hidden_size, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, tie_word_embeddings=False,
    )
    return Qwen3ForCausalLM(config)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """base/ and ckpts/global_step_{10,50,100}: a fixed rank-2 direction per parameter, grown over
    training (10%, 50%, 100% of it) plus a little noise; layer 1's MLP moves 3× more."""
    root = tmp_path_factory.mktemp("run")
    model = tiny_qwen3()
    model.save_pretrained(root / "base")
    base = {name: t.detach().clone() for name, t in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)

    def direction(name, shape):
        scale = 3.0 if "layers.1.mlp" in name else 1.0
        if len(shape) == 1:
            return scale * 0.05 * torch.randn(shape, generator=generator)
        left = torch.randn(shape[0], 2, generator=generator)
        right = torch.randn(2, shape[1], generator=generator)
        return scale * 0.02 * left @ right

    final_update = {name: direction(name, t.shape) for name, t in base.items()}
    for step in STEPS:
        fraction = step / STEPS[-1]
        with torch.no_grad():
            for name, parameter in model.state_dict().items():
                noise = 0.0 if step == STEPS[-1] else 1e-3 * torch.randn(parameter.shape, generator=generator)
                parameter.copy_(base[name] + fraction * final_update[name] + noise)
        model.save_pretrained(root / "ckpts" / f"global_step_{step}")
    return root


def ckpt(run, step):
    return str(run / "ckpts" / f"global_step_{step}")


def test_json_pngs_and_rescaled_checkpoints(run, tmp_path, capsys):
    out = tmp_path / "analysis"
    main([str(run / "base"), *(ckpt(run, s) for s in STEPS), "--out-dir", str(out),
          "--rescale-out", str(out / "rescaled"), "--alignment-rank", "2", "--device", "cpu"])
    printed = capsys.readouterr()
    assert "matrices" in printed.err  # the progress bar
    assert printed.out.count("global_step_") == 3 + 2  # the table, then the two rescaled folders

    report = json.loads((out / "geometry.json").read_text())
    assert report["final"] == ckpt(run, 100) and report["alignment_rank"] == 2
    checkpoints = report["checkpoints"]
    assert [c["step"] for c in checkpoints] == list(STEPS)
    assert [c["progress"] for c in checkpoints] == [0.1, 0.5, 1.0]
    assert [c["is_final"] for c in checkpoints] == [False, False, True]

    base, early, final = open_weights(run / "base"), open_weights(ckpt(run, 10)), open_weights(ckpt(run, 100))
    matrices = sorted(name for name, shape in base.shapes.items() if len(shape) == 2)
    assert len(matrices) == 2 * 7 + 2 and "lm_head.weight" in matrices
    for checkpoint in checkpoints:
        assert sorted(checkpoint["parameters"]) == matrices
        for entry in checkpoint["parameters"].values():
            assert METRICS <= set(entry) and all(isinstance(entry[m], float) for m in METRICS)

    name = "model.layers.0.self_attn.q_proj.weight"
    entry = checkpoints[0]["parameters"][name]
    expected = matrix_update_stats(base[name], early[name], torch.device("cpu"))
    for metric in METRICS:
        assert entry[metric] == pytest.approx(getattr(expected, metric), rel=1e-5)
    assert (entry["module_type"], entry["layer"], entry["shape"]) == ("attention", 0, [32, 32])
    assert entry["alignment_with_final"] == pytest.approx(
        update_alignment(early[name] - base[name], final[name] - base[name], rank=2), abs=1e-4
    )
    # the final update is rank 2: its stats against numpy's SVD of it (float64); the early ones follow its
    # direction, almost exactly by the middle
    final_entry = checkpoints[2]["parameters"][name]
    sigma = np.linalg.svd((final[name] - base[name]).double().numpy(), compute_uv=False)
    p = sigma / sigma.sum()
    p = p[p > 0]
    assert final_entry["spectral_frobenius_ratio"] == pytest.approx(sigma[0] / np.linalg.norm(sigma), rel=1e-5)
    assert final_entry["effective_rank"] == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-3)
    # the reference case is a genuine rank 2 (two singular values of one order, the rest float rounding), so the
    # effective rank compared above lies strictly between 1 and 2
    assert sigma[1] > 0.1 * sigma[0] and sigma[2] < 1e-6 * sigma[0]
    for checkpoint in checkpoints:
        both = checkpoint["aggregates"]["attention_and_mlp"]
        assert both["matrices"] == 14 and 0.5 < both["alignment_with_final"] <= 1.0 + 1e-6
    assert checkpoints[1]["aggregates"]["attention_and_mlp"]["alignment_with_final"] > 0.95

    aggregates = checkpoints[2]["aggregates"]
    assert list(aggregates["by_module_type"]) == ["attention", "mlp", "embedding"]
    assert sorted(aggregates["by_layer"]) == ["0", "1"]
    layer_mlp = [aggregates["by_layer"][layer]["mlp"]["update_norm"] for layer in ("0", "1")]
    assert layer_mlp[1] > 2 * layer_mlp[0]
    norms = [checkpoints[i]["aggregates"]["all_matrices"]["update_norm"] for i in range(3)]
    assert norms[0] < norms[1] < norms[2]

    for png in ("update_norm_by_layer.png", "alignment_with_final.png"):
        assert (out / png).stat().st_size > 10_000

    for step in (10, 50):
        folder = out / "rescaled" / f"step_{step}"
        assert (folder / "config.json").is_file() and (folder / "rescaling.json").is_file()
        model = Qwen3ForCausalLM.from_pretrained(folder)
        rescaled = model.state_dict()
        source = open_weights(ckpt(run, step))
        for name in base:
            early_update = source[name] - base[name]
            final_norm = torch.linalg.norm(final[name] - base[name])
            assert torch.linalg.norm(rescaled[name] - base[name]) == pytest.approx(final_norm.item(), rel=1e-4)
            cosine = torch.nn.functional.cosine_similarity((rescaled[name] - base[name]).flatten(), early_update.flatten(), dim=0)
            assert cosine.item() == pytest.approx(1.0, abs=1e-4)
    scales = json.loads((out / "rescaled" / "step_10" / "rescaling.json").read_text())["scales"]
    name = "model.layers.0.mlp.up_proj.weight"
    predicted = torch.linalg.norm(final[name] - base[name]) / torch.linalg.norm(early[name] - base[name])
    assert scales[name] == pytest.approx(predicted.item(), rel=1e-5) and 8 < scales[name] < 10


def test_paper_table_puts_our_means_next_to_table_1(run, tmp_path, capsys):
    out = tmp_path / "table1.md"
    main([str(run / "base"), *(ckpt(run, s) for s in STEPS), "--json", str(tmp_path / "g.json"),
          "--paper-table", str(out), "--device", "cpu"])
    assert f"wrote {out}" in capsys.readouterr().out
    ours = [c["aggregates"]["attention_and_mlp"] for c in json.loads((tmp_path / "g.json").read_text())["checkpoints"]]
    lines = out.read_text().splitlines()
    header = next(line for line in lines if line.startswith("| metric | toy OPD"))
    assert header.count("toy OPD") == len(STEPS) and "10% (step 10)" in header and "100% (step 100)" in header

    def row(label: str) -> list[str]:
        return [cell.strip() for cell in next(line for line in lines if line.startswith(f"| {label} |")).strip("|").split("|")]

    ratio = row("spectral / Frobenius ratio")
    assert ratio[1:1 + len(STEPS)] == [f"{a['spectral_frobenius_ratio']:.1%}" for a in ours]
    assert ratio[-2:] == ["1.5B 39.6%, 4B 25.7%, 8B 36.8%, 14B 28.1%", "1.5B 33.2%, 4B 19.7%, 8B 32.7%, 14B 24.4%"]
    assert row("effective rank")[1:1 + len(STEPS)] == [f"{a['effective_rank']:.1f}" for a in ours]
    assert "8B 2341" in row("effective rank")[-2] and "8B 2754" in row("effective rank")[-1]
    assert "OPD 51.6%" in row("bf16 update sparsity")[-2]


def test_safetensors_files_a_separate_final_and_json_only(run, tmp_path, capsys):
    weights = run / "ckpts" / "global_step_50" / "model.safetensors"
    json_path = tmp_path / "only.json"
    main([str(run / "base" / "model.safetensors"), str(weights), "--final", ckpt(run, 100),
          "--json", str(json_path), "--device", "cpu"])
    report = json.loads(json_path.read_text())
    assert [c["path"] for c in report["checkpoints"]] == [str(weights), ckpt(run, 100)]
    assert [c["is_final"] for c in report["checkpoints"]] == [False, True]
    assert [c["progress"] for c in report["checkpoints"]] == [0.5, 1.0]
    assert not list(tmp_path.glob("*.png"))
    assert "wrote " + str(json_path) in capsys.readouterr().out


def error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_errors_name_the_argument_and_the_fix(run, tmp_path, capsys):
    base = str(run / "base")
    message = error_of([base, str(tmp_path / "nope")], capsys)
    assert f"CKPT {tmp_path / 'nope'}: " in message and "does not exist" in message and "HF model folder" in message
    message = error_of([str(tmp_path), ckpt(run, 10)], capsys)
    assert "BASE: " in message and "holds no .safetensors files" in message

    tiny_qwen3(hidden_size=48).save_pretrained(tmp_path / "wider")
    message = error_of([base, str(tmp_path / "wider")], capsys)
    assert f"CKPT {tmp_path / 'wider'}: " in message and "has shape (96, 48) but (96, 32) in the base" in message
    assert "same architecture" in message

    save_file({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "other.safetensors")
    message = error_of([base, ckpt(run, 10), "--final", str(tmp_path / "other.safetensors")], capsys)
    assert f"--final {tmp_path / 'other.safetensors'} shares no weight matrix with the base" in message

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    message = error_of([base, ckpt(run, 10), "--rescale-out", str(tmp_path / "busy")], capsys)
    assert "--rescale-out: " in message and "not empty" in message
    message = error_of([base, ckpt(run, 10), ckpt(run, 10)], capsys)
    assert "given more than once" in message


def test_docstring_examples():
    result = doctest.testmod(analyze)
    assert result.attempted > 0 and result.failed == 0
