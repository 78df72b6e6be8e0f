"""The server student (`teachable.policy.server`) against a fake SGLang / vLLM server backed by the
same tiny model: the same scores and greedy replies as the in-process HFPolicy, clear start-up
errors, retries, LoRA adapters."""

import copy
import re
import shutil
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer

from teachable.core.params import Params
from teachable.envs.babyai import ACTIONS
from teachable.evaluation.panels import adapted
from teachable.policy.hf import HFPolicy
from teachable.policy.prompts import build_messages, completion_ids
from teachable.policy.server import ServerError, ServerPolicy, server_policy
from teachable.policy.student import load_student
from teachable.training.student.build import build_model, train_tokenizer
from tests.fake_engine import FakeEngine

pytestmark = pytest.mark.heavy  # `make test-fast` leaves it out

FLAVOURS = ["sglang", "vllm"]
# candidates of 1 token (an empty reply: end-of-turn only), a few, and many
EXTRA = [
    "",
    "search[red ball behind the grey door]",
    "click[next >]",
    "go forward and then pick up the red ball",
]


def state(i: int) -> list[dict]:
    history = [{"obs": "x", "action": ACTIONS[i % 3]}] * (i % 3)
    return build_messages(
        "go to the red ball",
        f"You see: red ball {i + 1} forward{' 1 left' * (i % 2)}.",
        ACTIONS,
        history,
        "Teacher: do 'go forward'." if i % 4 == 0 else None,
    )


def batch(n: int = 20) -> tuple[list, list]:
    pool = ACTIONS + EXTRA
    return [state(i) for i in range(n)], [
        [pool[(i + k * 3) % len(pool)] for k in range(3 + i % 6)] for i in range(n)
    ]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    params = Params.defaults(
        student={"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
    )
    texts = [m["content"] for i in range(4) for m in state(i)] + ACTIONS + EXTRA
    tokenizer = train_tokenizer(texts, 400)
    path = tmp_path_factory.mktemp("served-student")
    build_model(params.student, tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf(student_dir):
    return HFPolicy.load(str(student_dir), device="cpu", dtype="float32", batch_size=8)


@pytest.fixture(scope="module")
def adapter_dir(student_dir, tmp_path_factory):
    """A LoRA adapter with non-zero weights (a fresh one is the identity), as phase 2 would save
    it."""
    model = get_peft_model(
        HFPolicy.load(str(student_dir), device="cpu").model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("phase2") / "Q1-demo"
    model.save_pretrained(path)
    return path


def connect(flavour, url, student_dir, **kwargs):
    kwargs = {"max_retries": 2, "backoff_s": 0.01, "timeout_s": 10.0, **kwargs}
    return server_policy(
        flavour, url, student_dir, tokenizer=AutoTokenizer.from_pretrained(student_dir), **kwargs
    )


@pytest.fixture(params=FLAVOURS)
def served(request, student_dir):
    with FakeEngine(student_dir, request.param) as engine:
        policy = connect(request.param, engine.url, student_dir)
        policy.check()
        engine.calls.clear()
        yield engine, policy


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_load_student_connects_to_the_configured_server_and_checks_it(flavour, student_dir):
    with FakeEngine(student_dir, flavour) as engine:
        params = Params.defaults(
            student={
                "backend": flavour,
                "url": engine.url,
                "base_model": str(student_dir),
                "max_concurrency": 4,
                "max_retries": 1,
            }
        )
        policy = load_student(params.student)
        assert (
            isinstance(policy, ServerPolicy)
            and policy.engine == flavour
            and policy.url == engine.url
        )
        assert (policy.max_concurrency, policy.max_retries) == (4, 1)
        assert engine.paths() == [
            "/get_model_info" if flavour == "sglang" else "/v1/models",
            "/tokenize",
        ]


def test_scores_equal_the_in_process_scores(served, hf):
    engine, policy = served
    states, candidates = batch()
    lengths = {len(completion_ids(policy.tokenizer, a)) for cands in candidates for a in cands}
    assert 1 in lengths and max(lengths) > 8  # one-token and long candidates are both scored
    got, want = policy.score(states, candidates), hf.score(states, candidates)
    for g, w, cands in zip(got, want, candidates):
        assert g.candidates == w.candidates == cands
        np.testing.assert_allclose(g.logliks, w.logliks, atol=1e-4)
        assert np.ptp(g.logliks) > 1e-3  # the candidates are told apart, not all one value
    # per state: the prompt prefilled alone, then every candidate after it
    if engine.flavour == "sglang":
        assert engine.paths() == ["/generate"] * 2 * len(states)
        prefills = [b for _, b in engine.calls if not b.get("return_logprob")]
        scored = [b for _, b in engine.calls if b.get("return_logprob")]
        prompts = sorted(map(tuple, (b["input_ids"] for b in prefills)))
        assert prompts == sorted(tuple(policy.prompt_ids(s)) for s in states)
        assert all(b["sampling_params"] == {"max_new_tokens": 0} for b in prefills + scored)
        candidates_of = {tuple(policy.prompt_ids(s)): cands for s, cands in zip(states, candidates)}
        # logprob_start_len at the prompt's last token, the candidates after the prompt
        for b in scored:
            prompt = b["input_ids"][0][: b["logprob_start_len"] + 1]
            cands = candidates_of[tuple(prompt)]
            assert b["input_ids"] == [prompt + completion_ids(policy.tokenizer, c) for c in cands]
    else:
        assert engine.paths() == ["/v1/completions"] * len(states)
        assert all(
            b["prompt_logprobs"] == 0 and b["model"] == str(engine.served_name)
            for _, b in engine.calls
        )


def test_token_ids_are_sent_not_text(served):
    engine, policy = served
    policy.score([state(0)], [["go forward", ""]])
    body = engine.calls[-1][1]
    sent = body["input_ids"] if engine.flavour == "sglang" else body["prompt"]
    prompt = policy.prompt_ids(state(0))
    assert sent == [
        prompt + completion_ids(policy.tokenizer, "go forward"),
        prompt + completion_ids(policy.tokenizer, ""),
    ]


def test_greedy_replies_equal_the_in_process_replies(served, hf):
    engine, policy = served
    states = [state(i) for i in range(6)]
    got, want = policy.generate(states, max_new_tokens=12), hf.generate(states, max_new_tokens=12)
    assert got == want and any(got)


def test_sampled_requests_each_get_their_own_seed(served):
    engine, policy = served
    policy.generate([state(0)] * 3, max_new_tokens=4, temperature=1.0, seed=7)
    if engine.flavour == "sglang":
        seeds = sorted(b["sampling_params"]["sampling_seed"] for _, b in engine.calls)
    else:
        seeds = sorted(b["seed"] for _, b in engine.calls)
    assert seeds == [7, 8, 9]


def test_replies_are_decoded_as_the_in_process_policy_decodes_them(served):
    _, policy = served
    ids = completion_ids(policy.tokenizer, "click[next >]")  # the reply, then end-of-turn
    assert policy.tokenizer.eos_token_id in ids
    assert policy._reply(ids, "unused") == "click[next >]"
    # no ids returned: its text
    assert policy._reply(None, "the server's text") == "the server's text"


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_another_served_model_is_a_clear_error(flavour, student_dir):
    with FakeEngine(student_dir, flavour, served_name="/models/some-other-model") as engine:
        with pytest.raises(
            ServerError,
            match=(
                f"{re.escape(engine.url)} serves .*some-other-model.*not "
                f"{re.escape(str(student_dir))}"
            ),
        ):
            connect(flavour, engine.url, student_dir).check()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_another_tokenizer_is_a_clear_error(flavour, student_dir):
    other = train_tokenizer(["a different text, a different vocabulary"] * 20 + ACTIONS, 300)
    with FakeEngine(student_dir, flavour, tokenizer=other) as engine:
        with pytest.raises(ServerError, match=f"{re.escape(engine.url)} tokenises a prompt unlike"):
            connect(flavour, engine.url, student_dir).check()


def test_an_sglang_without_tokenize_is_checked_without_it(student_dir, caplog):
    with FakeEngine(student_dir, "sglang", tokenize_endpoint=False) as engine:
        caplog.set_level("INFO", logger="teachable.policy.server")
        connect("sglang", engine.url, student_dir).check()
    assert "no tokenize endpoint" in caplog.text


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_no_server_is_a_clear_error_after_retries(flavour, student_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free: nothing listens once the socket is closed
    policy = connect(flavour, f"http://127.0.0.1:{port}", student_dir, backoff_s=0.2)
    start = time.monotonic()
    with pytest.raises(
        ServerError, match=rf"no server at http://127.0.0.1:{port} .*start it with `.*{flavour}"
    ):
        policy.check()
    with pytest.raises(ServerError, match="no server at"):
        policy.score([state(0)], [ACTIONS])
    assert 1.2 <= time.monotonic() - start < 6  # three tries each: 0.2 s, then 0.4 s between them


def test_a_server_error_once_is_retried(served, hf):
    engine, policy = served
    engine.faults = [500]
    got = policy.score([state(1)], [ACTIONS])[0]
    np.testing.assert_allclose(got.logliks, hf.score([state(1)], [ACTIONS])[0].logliks, atol=1e-4)
    assert len(engine.calls) == (3 if engine.flavour == "sglang" else 2)  # one request sent twice


def test_a_slow_answer_is_retried(served, student_dir):
    engine, _ = served
    policy = connect(engine.flavour, engine.url, student_dir, timeout_s=0.3)
    engine.faults = [1.0]
    assert policy.generate([state(2)], max_new_tokens=3)
    assert len(engine.calls) == 2


def test_errors_that_persist_or_are_ours_end_with_the_url(served):
    engine, policy = served
    engine.faults = [503] * 3  # max_retries 2: three tries
    with pytest.raises(ServerError, match=f"{re.escape(engine.url)}/.* failed 3 times .*HTTP 503"):
        policy.generate([state(0)], max_new_tokens=2)
    engine.calls.clear()
    engine.faults = [422]
    with pytest.raises(ServerError, match="refused the request \\(HTTP 422\\)"):
        policy.generate([state(0)], max_new_tokens=2)
    assert len(engine.calls) == 1  # a 4xx is not retried


def test_an_adapter_is_loaded_once_and_named_in_every_request(served, hf, adapter_dir):
    engine, policy = served
    states, candidates = batch(6)
    base = policy.score(states, candidates)
    engine.calls.clear()
    with adapted(policy, str(adapter_dir)) as view, adapted(hf, str(adapter_dir)) as local:
        got = view.score(states, candidates)
        again = view.score(states, candidates)
        want = local.score(states, candidates)
        assert view.generate(states[:3], max_new_tokens=8) == local.generate(
            states[:3], max_new_tokens=8
        )
        # already loaded: no reload
        assert policy.with_adapter(view.adapter, adapter_dir).adapter == view.adapter
    for g, a, w, b in zip(got, again, want, base):
        np.testing.assert_allclose(g.logliks, w.logliks, atol=1e-4)
        np.testing.assert_allclose(a.logliks, w.logliks, atol=1e-4)
        assert np.abs(g.logliks - b.logliks).max() > 1e-3  # the adapter changes the scores
    loads = [b for p, b in engine.calls if p.endswith("/load_lora_adapter")]
    assert loads == [{"lora_name": view.adapter, "lora_path": str(adapter_dir.resolve())}]
    assert [p for p, _ in engine.calls][-1].endswith("/unload_lora_adapter") and not engine.adapters
    work = [b for p, b in engine.calls if p in ("/generate", "/v1/completions")]
    if engine.flavour == "sglang":
        assert all(
            b["lora_path"] in (view.adapter, [view.adapter] * len(b["input_ids"])) for b in work
        )
    else:
        assert all(b["model"] == view.adapter for b in work)
    engine.calls.clear()
    policy.score(states[:2], candidates[:2])  # the base policy again: no adapter named
    assert all(
        "lora_path" not in b and b.get("model") in (None, str(engine.served_name))
        for _, b in engine.calls
    )


@pytest.fixture(scope="module")
def chat_student_dir(student_dir, tmp_path_factory):
    """The student trained a few steps to answer "go forward" and end its turn (`<|end|>`), saved
    with another eos in its generation config, as Qwen3's base checkpoints name `<|endoftext|>`
    while the template ends a turn with `<|im_end|>`: an engine on its own stops only at that eos,
    so only the client's stop ids end the reply."""
    policy = HFPolicy.load(str(student_dir), device="cpu", dtype="float32")
    model, tok = policy.model, policy.tokenizer
    records = []
    for i in range(8):
        prompt = tok(policy.prompt(state(i)), add_special_tokens=False).input_ids
        reply = completion_ids(tok, "go forward")
        records.append(
            (torch.tensor([prompt + reply]), torch.tensor([[-100] * len(prompt) + reply]))
        )
    model.train()
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        for ids, labels in records:
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.generation_config.eos_token_id = tok.pad_token_id  # not the end of turn
    path = tmp_path_factory.mktemp("chat-student")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_replies_stop_at_the_templates_end_of_turn(flavour, chat_student_dir):
    from teachable.policy.prompts import stop_token_ids

    hf = HFPolicy.load(str(chat_student_dir), device="cpu", dtype="float32")
    eot = stop_token_ids(hf.tokenizer)
    assert (
        eot
        == [hf.tokenizer.convert_tokens_to_ids("<|end|>")]
        != [hf.model.generation_config.eos_token_id]
    )
    states = [state(i) for i in range(4)]
    with FakeEngine(chat_student_dir, flavour) as engine:
        policy = connect(flavour, engine.url, chat_student_dir)
        got = policy.generate(states, max_new_tokens=12)
        assert got == hf.generate(states, max_new_tokens=12) == ["go forward"] * 4
        bodies = [b for _, b in engine.calls]
        sent = [
            b["sampling_params"]["stop_token_ids"] if flavour == "sglang" else b["stop_token_ids"]
            for b in bodies
        ]
        # SGLang's sampling_params.stop_token_ids, vLLM's CompletionRequest.stop_token_ids
        assert sent == [eot] * 4
        assert all(out[-1] == eot[0] and len(out) < 12 for out in engine.outputs)
        # the same request without stop ids (what the client sent before): the engine runs on past
        # the end of turn
        engine.outputs.clear()
        body = copy.deepcopy(bodies[0])
        body["sampling_params" if flavour == "sglang" else "stop_token_ids"] = (
            {k: v for k, v in body["sampling_params"].items() if k != "stop_token_ids"}
            if flavour == "sglang"
            else []
        )
        httpx.post(
            engine.url + ("/generate" if flavour == "sglang" else "/v1/completions"),
            json=body,
            timeout=30,
        )
        assert len(engine.outputs[0]) == 12 and eot[0] in engine.outputs[0]


def retrain(adapter: Path, seed: int) -> None:
    """New LoRA weights saved over `adapter` (its config unchanged), as a retrained cell at the same
    path."""
    from safetensors.torch import load_file, save_file

    weights = load_file(adapter / "adapter_model.safetensors")
    torch.manual_seed(seed)
    save_file(
        {k: torch.randn_like(v) * 0.5 if "lora_B" in k else v for k, v in weights.items()},
        adapter / "adapter_model.safetensors",
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_retrained_adapter_is_a_new_name_and_its_new_weights_are_served(
    flavour, student_dir, adapter_dir, hf, tmp_path
):
    from teachable.policy.server import adapter_name

    path = tmp_path / "phase2" / "Q1-demo"
    shutil.copytree(adapter_dir, path)
    states, candidates = batch(4)
    with FakeEngine(student_dir, flavour) as engine:
        first = connect(flavour, engine.url, student_dir)
        old_name = adapter_name(path)
        # left loaded: a long-running server
        old = first.with_adapter(old_name, path).score(states, candidates)
        retrain(path, seed=7)
        new_name = adapter_name(path)
        assert new_name != old_name and new_name.startswith("phase2-Q1-demo-")
        second = connect(flavour, engine.url, student_dir)  # the next run against the same server
        with adapted(second, str(path)) as view, adapted(hf, str(path)) as local:
            assert view.adapter == new_name
            got, want = view.score(states, candidates), local.score(states, candidates)
        for g, w, o in zip(got, want, old):
            # the retrained weights, not the old
            np.testing.assert_allclose(g.logliks, w.logliks, atol=1e-4)
            assert np.abs(g.logliks - o.logliks).max() > 1e-3
        loads = [b["lora_name"] for p, b in engine.calls if p.endswith("/load_lora_adapter")]
        assert loads == [old_name, new_name]
        # the same weights again: the server already holds them under their name, which is an
        # answer, not an error
        third = connect(flavour, engine.url, student_dir)
        assert third.with_adapter(old_name, adapter_dir).adapter == old_name
    with pytest.raises(ServerError, match="not a LoRA adapter directory"):
        adapter_name(tmp_path)


@pytest.mark.parametrize(
    "status, message",
    [
        (500, "LoRA rank 64 exceeds --max-lora-rank 16"),
        (400, "target module gate_proj is not supported"),
    ],
)
def test_a_refused_adapter_load_names_the_servers_message_and_stops(
    served, adapter_dir, status, message
):
    engine, policy = served
    engine.load_errors = [(status, message)]
    with pytest.raises(
        ServerError,
        match=rf"{re.escape(engine.url)} could not load LoRA adapter .*Q1-demo.* "
        rf"\(HTTP {status}\): {re.escape(message)}",
    ):
        with adapted(policy, str(adapter_dir)):
            pass
    assert [p for p, _ in engine.calls] == [engine.calls[0][0]] and engine.calls[0][0].endswith(
        "/load_lora_adapter"
    )
    assert not policy._adapters and not engine.adapters  # nothing recorded as loaded; not retried
