"""The premise's cosines on synthetic trajectories whose geometry is known (verl's single-rank file layout)."""

import math

import pytest
import torch

from effopd_verl.bench import premise as pm


def save_run(tmp_path, thetas: list[dict]) -> None:
    for step, theta in enumerate(thetas, start=1):
        actor = tmp_path / "checkpoints" / f"global_step_{step}" / "actor"
        actor.mkdir(parents=True)
        torch.save({**theta, "lm_head.weight": torch.zeros(1)}, actor / "model_world_size_1_rank_0.pt")


def test_a_straight_path_is_aligned_and_a_zigzag_is_not(tmp_path):
    base = {"a": torch.zeros(3), "b": torch.zeros(2, 2)}
    direction = {"a": torch.tensor([1.0, 2.0, 0.0]), "b": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    straight = [{k: (t * v) for k, v in direction.items()} for t in range(1, 9)]
    save_run(tmp_path / "straight", straight)
    out, kept = pm.trajectory(tmp_path / "straight", base, pm.checkpoint_steps(tmp_path / "straight"), keep=(2, 8),
                              progress=lambda _: None)
    assert sorted(kept) == [2, 8] and torch.equal(kept[2]["a"], straight[1]["a"]) and "lm_head.weight" not in kept[8]
    assert all(v == pytest.approx(1.0) for v in out["alignment_cosine"].values())
    assert out["step_cosines"] == pytest.approx([1.0] * 7)
    assert [(w["from_window_ending"], w["to_window_ending"]) for w in out["window_cosines"]] == [(1, 2), (2, 4), (4, 8)]
    assert out["final_update_norm"] == pytest.approx(8 * math.sqrt(7))

    # alternate between two orthogonal unit steps: consecutive steps are orthogonal, Δ_1 is 45° off Δ_T
    e1, e2 = {"a": torch.tensor([1.0, 0, 0]), "b": torch.zeros(2, 2)}, {"a": torch.tensor([0, 1.0, 0]), "b": torch.zeros(2, 2)}
    zigzag, theta = [], {k: v.clone() for k, v in base.items()}
    for k in range(8):
        step = e1 if k % 2 == 0 else e2
        theta = {n: theta[n] + step[n] for n in theta}
        zigzag.append(theta)
    save_run(tmp_path / "zigzag", zigzag)
    out, _ = pm.trajectory(tmp_path / "zigzag", base, pm.checkpoint_steps(tmp_path / "zigzag"), progress=lambda _: None)
    assert out["step_cosines"] == pytest.approx([0.0] * 7, abs=1e-12)
    assert out["alignment_cosine"]["1"] == pytest.approx(1 / math.sqrt(2))
    assert out["window_cosines"][0]["cosine"] == pytest.approx(0.0, abs=1e-12)  # d = e1, then e2


def test_global_rescaling_gives_the_final_norm_along_the_early_direction():
    base = {"w": torch.ones(4)}
    early, final = {"w": torch.tensor([2.0, 1, 1, 1])}, {"w": torch.tensor([1.0, 1, 5, 1])}
    out = dict(pm.globally_rescaled(base, early, final))
    assert torch.allclose(out["w"], torch.tensor([5.0, 1, 1, 1]))


def test_a_run_without_checkpoints_says_how_to_keep_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="--keep-checkpoints"):
        pm.checkpoint_steps(tmp_path)
