"""Per-prompt scores of the actor as it stands, on EffOPD's fixed validation prompts.

- ``reward`` (the paper's): the prompts go through verl's agent loop with validate semantics (the
  rollout replicas generate with ``rollout.val_kwargs`` — greedy by default — and the teacher is never
  called); the run's reward function scores them; score = mean reward of a prompt's trajectories.
- ``teacher_logprob``: the teacher's greedy answers to the prompts are generated once through the
  teacher's inference servers; score = mean per-token log-probability the actor gives them, from a
  teacher-forced forward pass on the training engine (no weight push, no rollout). A prompt whose
  answer is empty is left out of every candidate's score.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import numpy as np
from torch.utils.data import Dataset, Subset
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.rl_dataset import collate_fn

from effopd_verl.core.config import EffOPDConfig


def validation_prompts(effopd: EffOPDConfig, train_dataset: Dataset, load_files) -> Dataset:
    """``effopd.val_files`` (through ``load_files``), else ``val_size`` prompts of the training data drawn with ``seed``."""
    if effopd.val_files is not None:
        return load_files(effopd.val_files)
    if effopd.val_size > len(train_dataset):
        raise ValueError(
            f"effopd.val_size={effopd.val_size} is larger than the training data ({len(train_dataset)} prompts): "
            "lower effopd.val_size or give effopd.val_files"
        )
    chosen = np.random.default_rng(effopd.seed).choice(len(train_dataset), size=effopd.val_size, replace=False)
    return Subset(train_dataset, sorted(int(i) for i in chosen))


def as_batch(dataset: Dataset) -> dict:
    """All prompts of ``dataset`` as one collated batch (as verl's validation dataloader yields them)."""
    return collate_fn([dataset[i] for i in range(len(dataset))])


def reward_scores(trainer, prompts: dict, tag: str) -> list[float]:
    """Generate on every prompt with the weights the replicas hold now and score them with the run's reward.

    ``tag`` makes this call's TransferQueue keys unique; prompt i's uid is ``{tag}p{i}``. A prompt whose
    generation failed scores 0, as in verl's validation.
    """
    import transfer_queue as tq

    n = len(prompts["raw_prompt"])
    uids = [f"{tag}p{i}" for i in range(n)]
    batch_dict = dict(prompts)
    batch_dict["uid"] = np.array(uids, dtype=object)
    batch = tu.get_tensordict(batch_dict)
    tu.assign_non_tensor_data(batch, "global_steps", trainer.global_steps)
    tu.assign_non_tensor_data(batch, "validate", True)
    tags = [{"is_prompt": True, "status": "pending", "global_steps": trainer.global_steps} for _ in range(n)]
    tq.kv_batch_put(keys=uids, partition_id="val", tags=tags)
    trainer.agent_loop_manager.generate_sequences(batch)
    meta, _ = trainer.replay_buffer.sample(global_steps=trainer.global_steps, partition_id="val", batch_size=n)
    try:
        final = _final_output_per_session(meta.keys)
        data = tq.kv_batch_get(keys=final, partition_id=meta.partition_id, select_fields=["uid", "rm_scores"])
        per_uid: dict[str, list[float]] = defaultdict(list)
        for uid, score in zip(list(data["uid"]), data["rm_scores"].sum(dim=1).tolist()):
            per_uid[str(uid)].append(float(score))
    finally:
        tq.kv_clear(keys=meta.keys, partition_id=meta.partition_id)
    return [float(np.mean(per_uid[uid])) if per_uid.get(uid) else 0.0 for uid in uids]


def _final_output_per_session(keys: list[str]) -> list[str]:
    """Keys are ``{uid}_{session}_{index}``; keep the highest index of each session (multi-output agent loops)."""
    best: dict[str, tuple[int, str]] = {}
    for key in keys:
        parts = key.rsplit("_", 2)
        session, index = (f"{parts[0]}_{parts[1]}", int(parts[2])) if len(parts) == 3 else (key, 0)
        if session not in best or index > best[session][0]:
            best[session] = (index, key)
    return [key for _, key in best.values()]


def prompt_token_ids(tokenizer, prompts: dict, chat_template_kwargs: dict) -> list[list[int]]:
    """The token ids the rollout sees for each prompt: the chat template with the generation prompt."""
    out = []
    for messages in prompts["raw_prompt"]:
        ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, **chat_template_kwargs)
        if not isinstance(ids, list):  # a BatchEncoding
            ids = ids["input_ids"]
        out.append([int(i) for i in ids])
    return out


def greedy_sampling_params(rollout_config, max_tokens: int) -> dict:
    """Greedy decoding as verl's agent loop asks its servers for it (validation top_p/top_k), up to ``max_tokens``.

    The teacher's servers are configured by verl for one-token scoring; an explicit ``max_tokens``
    makes them generate whole answers.
    """
    return dict(
        temperature=0.0,
        top_p=rollout_config.val_kwargs.top_p,
        top_k=rollout_config.val_kwargs.top_k,
        repetition_penalty=1.0,
        logprobs=False,
        max_tokens=max_tokens,
    )


def teacher_responses(teacher_client, prompt_ids: list[list[int]], sampling_params: dict) -> list[list[int]]:
    """The teacher's answers, generated concurrently through its inference servers."""

    async def generate_all():
        requests = [
            teacher_client.generate(request_id=f"effopd-teacher-{i}", prompt_ids=ids, sampling_params=dict(sampling_params))
            for i, ids in enumerate(prompt_ids)
        ]
        return await asyncio.gather(*requests)

    outputs = asyncio.run(generate_all())
    return [[int(t) for t in out.token_ids] for out in outputs]


def answered(prompt_ids: list[list[int]], responses: list[list[int]]) -> tuple[list[tuple[list[int], list[int]]], int]:
    """The (prompt, answer) pairs whose teacher answer is non-empty, and how many prompts are left out.

    An empty answer has no mean log-prob (0/0): its prompt is left out of every candidate's score, so
    all candidates stay paired on the same prompts. No answer at all is an error.
    """
    if len(prompt_ids) != len(responses):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(responses)} teacher answers: they must be paired")
    pairs = [(p, r) for p, r in zip(prompt_ids, responses) if r]
    if not pairs:
        raise ValueError(
            f"the teacher's greedy answer is empty for all {len(prompt_ids)} EffOPD validation prompts: nothing to "
            "score with effopd.score=teacher_logprob; check the teacher (does it stop at once?) or use effopd.score=reward"
        )
    return pairs, len(prompt_ids) - len(pairs)


def teacher_logprob_scores(actor_wg, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
    """Mean per-token log-prob of each teacher answer after its prompt under the actor (pairs from
    :func:`answered`; every rank computes, rank 0 answers)."""
    per_rank = actor_wg.effopd_response_logprob(pairs)
    return [float(s) for s in per_rank[0]]


__all__ = [
    "validation_prompts",
    "as_batch",
    "reward_scores",
    "prompt_token_ids",
    "greedy_sampling_params",
    "teacher_responses",
    "answered",
    "teacher_logprob_scores",
]
