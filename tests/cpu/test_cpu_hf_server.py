"""The hf rollout server on a tiny real Qwen3: batched scoring and generation equal single-sequence
reference computations, explicit max_tokens is honoured, and weight pushes change what it serves."""

from __future__ import annotations

import asyncio

import pytest
import torch
from transformers import AutoModelForCausalLM
from verl.workers.config import HFModelConfig, RolloutConfig

from effopd_verl.cpu.hf_server import HFRolloutServer, resolve_request
from effopd_verl.cpu.prompt_logprobs import prompt_logprob_rows

PROMPTS = [[1, 5, 6, 7, 3], [1, 8, 9, 3], [1, 10, 11, 12, 13, 14, 15, 3], [1, 4, 3]]


def _server(model_dir, response_length: int = 8, **kwargs) -> HFRolloutServer:
    config = RolloutConfig(name="hf", prompt_length=32, response_length=response_length, tensor_model_parallel_size=1, **kwargs)
    return HFRolloutServer(config=config, model_config=HFModelConfig(path=str(model_dir)), replica_rank=0)


def _reference(model_dir):
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa").eval()


def _gather(server, calls):
    async def main():
        return await asyncio.gather(*[server.generate(prompt_ids=p, sampling_params=dict(s), request_id=str(i)) for i, (p, s) in enumerate(calls)])

    return asyncio.run(main())


@pytest.mark.parametrize("k", [0, 3])
def test_batched_prompt_scoring_equals_single_sequence_reference(tiny_model_dir, k):
    server = _server(tiny_model_dir)
    params = {"max_tokens": 1, "temperature": 1.0, "prompt_logprobs": k, "detokenize": False}
    outputs = _gather(server, [(p, params) for p in PROMPTS])
    assert max(asyncio.run(server.batch_sizes())) > 1, "concurrent scoring requests were not batched"
    model = _reference(tiny_model_dir)
    for prompt, out in zip(PROMPTS, outputs):
        with torch.no_grad():
            logits = model(torch.tensor([prompt])).logits[0]
        ids, lps = prompt_logprob_rows(logits, torch.tensor(prompt), k)
        assert out.extra_fields["prompt_ids"] == ids
        assert torch.allclose(torch.tensor(out.extra_fields["prompt_logprobs"]), torch.tensor(lps), atol=1e-5)
        assert len(out.extra_fields["prompt_ids"]) == len(prompt)
        assert len(out.token_ids) == 1


def test_batched_greedy_generation_equals_one_request_at_a_time(tiny_model_dir):
    params = {"temperature": 0.0, "max_tokens": 6, "ignore_eos": True, "logprobs": True}
    batched = _gather(_server(tiny_model_dir), [(p, params) for p in PROMPTS])
    single = [_gather(_server(tiny_model_dir), [(p, params)])[0] for p in PROMPTS]
    for b, s in zip(batched, single):
        assert b.token_ids == s.token_ids
        assert torch.allclose(torch.tensor(b.log_probs), torch.tensor(s.log_probs), atol=1e-4)


def test_sampled_log_probs_are_the_actors_processed_log_probs(tiny_model_dir):
    temperature = 0.7
    params = {"temperature": temperature, "top_p": 1.0, "top_k": -1, "max_tokens": 8, "logprobs": True}
    outputs = _gather(_server(tiny_model_dir), [(p, params) for p in PROMPTS])
    model = _reference(tiny_model_dir)
    for prompt, out in zip(PROMPTS, outputs):
        sequence = torch.tensor([prompt + out.token_ids])
        with torch.no_grad():
            logits = model(sequence).logits[0, len(prompt) - 1 : -1] / temperature
        expected = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(out.token_ids)[:, None])[:, 0]
        assert torch.allclose(torch.tensor(out.log_probs), expected, atol=1e-4)


def test_explicit_max_tokens_is_honoured_beyond_response_length(tiny_model_dir):
    # a teacher's inference config has response_length 1; a full greedy answer asks max_tokens explicitly
    server = _server(tiny_model_dir, response_length=1)
    outs = _gather(server, [(p, {"temperature": 0.0, "max_tokens": 7, "ignore_eos": True}) for p in PROMPTS[:2]])
    assert [len(o.token_ids) for o in outs] == [7, 7]
    default = _gather(server, [(PROMPTS[0], {"temperature": 0.0, "ignore_eos": True})])[0]
    assert len(default.token_ids) == 1


def test_resolve_request_follows_verl_defaults():
    config = RolloutConfig(name="hf", prompt_length=10, response_length=6, tensor_model_parallel_size=1, max_model_len=14)
    assert resolve_request([1] * 8, {}, config).max_tokens == 6
    assert resolve_request([1] * 12, {}, config).max_tokens == 2  # room left in max_model_len
    assert resolve_request([1] * 4, {"max_tokens": 9}, config).max_tokens == 9
    assert resolve_request([1] * 4, {"prompt_logprobs": 0}, config).prompt_logprobs == 0
    with pytest.raises(ValueError):
        resolve_request([1] * 14, {}, config)


def test_weight_push_changes_what_is_served_and_matches_the_pushed_model(tiny_model_dir):
    server = _server(tiny_model_dir)
    params = {"max_tokens": 1, "temperature": 1.0, "prompt_logprobs": 0}
    before = _gather(server, [(PROMPTS[2], params)])[0].extra_fields["prompt_logprobs"]

    model = _reference(tiny_model_dir)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = list(model.state_dict().items())
    asyncio.run(server.stage_weights(state[: len(state) // 2]))
    asyncio.run(server.stage_weights(state[len(state) // 2 :]))
    report = asyncio.run(server.commit_weights(global_steps=3))
    assert report == {"loaded": len(state), "weight_version": 1}

    out = _gather(server, [(PROMPTS[2], params)])[0]
    with torch.no_grad():
        logits = model(torch.tensor([PROMPTS[2]])).logits[0]
    _, expected = prompt_logprob_rows(logits, torch.tensor(PROMPTS[2]), 0)
    after = out.extra_fields["prompt_logprobs"]
    assert torch.allclose(torch.tensor(after), torch.tensor(expected), atol=1e-5)
    assert not torch.allclose(torch.tensor(after), torch.tensor(before), atol=1e-3)
    assert out.extra_fields["global_steps"] == 3


def test_weight_push_rejects_unknown_names_and_shapes(tiny_model_dir):
    server = _server(tiny_model_dir)
    asyncio.run(server.stage_weights([("model.not_a_weight", torch.zeros(2))]))
    with pytest.raises(KeyError):
        asyncio.run(server.commit_weights())
    name, tensor = next(iter(_reference(tiny_model_dir).state_dict().items()))
    asyncio.run(server.stage_weights([(name, torch.zeros(tensor.numel() + 1))]))
    with pytest.raises(ValueError):
        asyncio.run(server.commit_weights())
