"""Reproducible rollouts of the hf engine on a tiny real Qwen3: a sampled request's tokens depend on the
seed, the weights and the step they were pushed at, its prompt and its occurrence, not on the batch it
is served in nor on the weight pushes before; the explicit decode loop computes what
``model.generate`` computes.

Tokens are compared exactly; log-probs within float rounding: CPU matrix products round differently
for different batch shapes, so a row's logits move in the last bits with its batch."""

from __future__ import annotations

import asyncio

import torch
from transformers import AutoModelForCausalLM
from verl.workers.config import HFModelConfig, RolloutConfig

from effopd_verl.cpu.hf_engine import HFEngine, Request
from effopd_verl.cpu.hf_server import HFRolloutServer

PROMPTS = [[1, 5, 6, 7, 3], [1, 8, 9, 3], [1, 10, 11, 12, 13, 14, 15, 3], [1, 4, 3], [1, 20, 21, 22, 3], [1, 30, 3]]
ATOL = 1e-4


def _model(model_dir):
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, attn_implementation="sdpa").eval()


def _engine(model, seed: int = 0) -> HFEngine:
    return HFEngine(model, eos_token_ids=[model.config.eos_token_id], pad_token_id=model.config.pad_token_id, seed=seed)


def _sampled(prompt, max_tokens: int = 16, **kwargs) -> Request:
    settings = {"temperature": 1.0, "ignore_eos": True} | kwargs
    return Request(list(prompt), max_tokens=max_tokens, **settings)


def _serve(engine: HFEngine, requests: list[Request], batches: list[list[int]]):
    """Serve ``requests`` as the given batches of indices; results in the order of ``requests``."""
    results = [None] * len(requests)
    for batch in batches:
        for i, result in zip(batch, engine.run([requests[i] for i in batch])):
            results[i] = result
    return results


def _assert_same(a, b):
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.finish_reason for r in a] == [r.finish_reason for r in b]
    for x, y in zip(a, b):
        assert torch.allclose(torch.tensor(x.log_probs), torch.tensor(y.log_probs), atol=ATOL)


def _tokens(results) -> list[list[int]]:
    return [r.token_ids for r in results]


def _perturbed(state, seed: int):
    generator = torch.Generator().manual_seed(seed)
    return [(name, t + 0.05 * torch.randn(t.shape, generator=generator)) for name, t in state]


def test_greedy_decoding_equals_hf_generate(tiny_model_dir):
    model = _model(tiny_model_dir)
    requests = [Request(list(p), max_tokens=6, temperature=0.0, ignore_eos=True) for p in PROMPTS]
    single = [_engine(model).run([r])[0] for r in requests]
    batched = _engine(model).run(requests)
    for prompt, one, many in zip(PROMPTS, single, batched):
        out = model.generate(
            torch.tensor([prompt]), do_sample=False, max_new_tokens=6, eos_token_id=[model.config.vocab_size],
            pad_token_id=model.config.pad_token_id, output_logits=True, return_dict_in_generate=True,
        )
        tokens = out.sequences[0, len(prompt) :]
        logprobs = torch.log_softmax(torch.stack(out.logits, dim=1)[0].float(), -1).gather(-1, tokens[:, None])[:, 0]
        assert one.token_ids == many.token_ids == tokens.tolist()
        assert torch.allclose(torch.tensor(one.log_probs), logprobs, atol=1e-5)
        assert torch.allclose(torch.tensor(many.log_probs), logprobs, atol=ATOL)


def test_sampled_requests_do_not_depend_on_their_batch(tiny_model_dir):
    model = _model(tiny_model_dir)
    requests = [_sampled(p) for p in PROMPTS]
    requests += [_sampled(PROMPTS[1], top_k=5), _sampled(PROMPTS[2], top_p=0.8, temperature=0.7)]
    requests += [_sampled(p + [7, 8], max_tokens=1, prompt_logprobs=0) for p in PROMPTS[:3]]  # teacher scoring
    everything = list(range(len(requests)))
    reference = _serve(_engine(model), requests, [everything])
    _assert_same(reference, _serve(_engine(model), requests, [[i] for i in everything]))
    _assert_same(reference, _serve(_engine(model), requests, [everything[::-2], everything[-2::-2]]))


def test_scoring_samples_its_token_as_generation_does(tiny_model_dir):
    model = _model(tiny_model_dir)
    generated = _engine(model).run([_sampled(p, max_tokens=1) for p in PROMPTS])
    scored = _engine(model).run([_sampled(p, max_tokens=1, prompt_logprobs=0) for p in PROMPTS])
    _assert_same(generated, scored)


def test_scoring_requests_keep_no_state(tiny_model_dir):
    """The teacher server gets no weight pushes: its scoring requests (prompt log-probs plus one token) must not
    leave an occurrence count behind each, or its memory grows with every request of a run. Repeats of one
    scoring request therefore sample the same token; generation requests still differ."""
    engine = _engine(_model(tiny_model_dir))
    scoring = [_sampled(p + [7, 8], max_tokens=1, prompt_logprobs=0) for p in PROMPTS]
    first = engine.run(scoring)
    assert not engine._occurrences
    _assert_same(first, engine.run(scoring))
    engine.run([_sampled(PROMPTS[0])])
    assert len(engine._occurrences) == 1


def test_copies_of_a_prompt_and_repeated_requests_get_different_samples(tiny_model_dir):
    model = _model(tiny_model_dir)
    engine = _engine(model)
    first = engine.run([_sampled(PROMPTS[0]) for _ in range(8)])
    again = engine.run([_sampled(PROMPTS[0]) for _ in range(8)])
    samples = [tuple(r.token_ids) for r in first + again]
    assert len(set(samples)) == len(samples)
    replay = _serve(_engine(model), [_sampled(PROMPTS[0]) for _ in range(16)], [list(range(5)), list(range(5, 16))])
    assert [tuple(r.token_ids) for r in replay] == samples


def test_samples_follow_the_step_of_the_push_not_the_pushes_before(tiny_model_dir):
    model = _model(tiny_model_dir)
    original = [(name, t.clone()) for name, t in model.state_dict().items()]
    requests = [_sampled(p) for p in PROMPTS]
    engine = _engine(model)
    before = engine.run(requests)
    assert _tokens(engine.run(requests)) != _tokens(before)  # second occurrences

    engine.load_weights(_perturbed(original, seed=1), step=0)
    engine.run(requests)
    engine.load_weights(_perturbed(original, seed=2), step=1)
    pushed = engine.run(requests)
    assert _tokens(pushed) != _tokens(before)
    resumed = _engine(_model(tiny_model_dir))  # a fresh server of a run resumed at step 1
    resumed.load_weights(_perturbed(original, seed=2), step=1)
    _assert_same(pushed, resumed.run(requests))

    engine.load_weights(_perturbed(original, seed=2))  # no step: a wake-up push, the streams go on
    assert _tokens(engine.run(requests)) != _tokens(pushed)
    engine.load_weights(original, step=7)  # a new step, same weights: fresh samples
    assert _tokens(engine.run(requests)) != _tokens(before)
    assert _tokens(_engine(_model(tiny_model_dir), seed=1).run(requests)) != _tokens(before)


def test_server_seeds_from_the_config_and_verls_deterministic_request_ids(tiny_model_dir):
    def server(seed: int, replica_rank: int = 0) -> HFRolloutServer:
        config = RolloutConfig(name="hf", prompt_length=32, response_length=16, tensor_model_parallel_size=1, seed=seed)
        return HFRolloutServer(config=config, model_config=HFModelConfig(path=str(tiny_model_dir)), replica_rank=replica_rank)

    def generate(srv: HFRolloutServer, request_ids: list[str]) -> dict[str, list[int]]:
        params = {"temperature": 1.0, "ignore_eos": True}

        async def main():
            calls = [srv.generate(prompt_ids=PROMPTS[0], sampling_params=dict(params), request_id=i) for i in request_ids]
            return await asyncio.gather(*calls)

        return {i: out.token_ids for i, out in zip(request_ids, asyncio.run(main()))}

    ids = [f"det-{i}" for i in range(6)]
    forward = generate(server(0), ids)
    assert generate(server(0), ids[::-1]) == forward  # each sample keeps its stream whatever the arrival order
    assert len({tuple(t) for t in forward.values()}) == len(ids)
    assert generate(server(1), ids) != forward
    # another replica serves a deterministic id as this one does: verl's load balancer may route it anywhere
    other = server(0, replica_rank=1)
    assert generate(other, ids[3:]) == {i: forward[i] for i in ids[3:]}
    # random ids: the replica rank separates the streams of copies of one prompt
    assert generate(server(0), ["a", "b"])["a"] != generate(other, ["c", "d"])["c"]
