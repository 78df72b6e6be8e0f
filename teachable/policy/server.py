"""The student behind an inference server (SGLang or vLLM), with the same `score` / `generate` as
`HFPolicy`.

Why: on a GPU an engine batches many requests in flight continuously and reuses cached prompt
prefixes, so rollouts, labeling and evaluation run far faster than in-process HF forwards. Prompts
and candidate replies are tokenised here, with the local copy of the served model's tokenizer
(`student.base_model`), and sent as token ids: the server scores exactly the tokens `HFPolicy`
scores (the reply and end-of-turn, log-probs summed, not length-normalised), whatever its own chat
template or detokenizer would do. Replies are decoded here too, from the ids the server returns, and
end where HFPolicy's do: at the chat template's end-of-turn token or eos, sent as the engine's
`stop_token_ids` (an engine by itself stops only at its model's eos, which for Qwen3's base
checkpoints is `<|endoftext|>`, not the template's `<|im_end|>`). LoRA adapters are named by a hash
of their weights (`adapter_name`), and a load the server refuses stops with the server's own
message.

Start a server, then set `student.backend` (sglang | vllm), `student.url` and `student.base_model`
(its model path):

    python -m sglang.launch_server --model-path MODEL --port 30000 --enable-lora \
        --max-lora-rank 64 --lora-target-modules all
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve MODEL --port 8000 --enable-lora \
        --max-lora-rank 64

(`--enable-lora ...` only where LoRA adapters are evaluated, phases 3 and 5; the rank must cover
`train.lora_r`.) To check a real engine against the in-process model on a few states (GPU machine,
the engine started with room left for a second copy, e.g. `--mem-fraction-static 0.5` /
`--gpu-memory-utilization 0.5`):

    python -m teachable.policy.server sglang http://127.0.0.1:30000 MODEL

It prints the largest score difference (the engines' kernels and bf16 make it larger than the 1e-4
the tests allow between two float32 copies) and on how many states the greedy replies agree.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from teachable.core.records import InputError
from teachable.policy.prompts import build_messages, completion_ids, render_prompt, stop_token_ids

log = logging.getLogger(__name__)

# A state whose rendered prompt the start-up check tokenises on the server and here.
PROBE = build_messages(
    "go to the red ball",
    "You see: red ball 2 forward, grey key 1 left.",
    ["turn left", "go forward", "pick up"],
    [{"obs": "x", "action": "turn left"}],
)


class ServerError(InputError):
    """The server is not there, serves another model or tokenizer, or keeps failing: one line naming
    its URL."""


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def adapter_name(path: str | Path) -> str:
    """A server-side name for a LoRA directory: readable, and a hash of its weights and config, so
    an adapter retrained at the same path is a new name (a long-running server never answers for it
    with the old weights it holds under the old name), and a name, once loaded, always means the
    same weights."""
    p = Path(path).resolve()
    files = [p / f for f in ADAPTER_FILES if (p / f).is_file()]
    if not any(f.name.startswith("adapter_model") for f in files):
        raise ServerError(
            f"{p} is not a LoRA adapter directory (none of {', '.join(ADAPTER_FILES[1:])})"
        )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"{p.parent.name}-{p.name}-{digest.hexdigest()[:12]}"


def server_message(resp: httpx.Response) -> str:
    """The server's own words in an error answer: SGLang's `error_message` ({success: false,
    error_message}), vLLM's `error.message` (or `message` in older versions), FastAPI's `detail`,
    else the body's text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict):
        error = body.get("error")
        for found in (
            body.get("error_message"),
            error.get("message") if isinstance(error, dict) else error,
            body.get("message"),
            body.get("detail"),
        ):
            if found:
                return str(found)[:500]
    return resp.text[:500]


def same_model(served: str, expected: str) -> bool:
    """The served name or path is the expected path, or names the same directory (a server may run
    elsewhere)."""
    s, e = served.rstrip("/"), expected.rstrip("/")
    return (
        s == e
        or Path(s).name == Path(e).name
        or (Path(s).exists() and Path(s).resolve() == Path(e).resolve())
    )


@dataclass
class _Http:
    """One event loop's client: at most `gate` requests in flight, each retried on connection
    errors, timeouts and 5xx answers with exponential backoff; a 4xx answer is the caller's mistake
    and is not retried."""

    client: httpx.AsyncClient
    gate: asyncio.Semaphore
    base: str
    retries: int
    backoff_s: float
    hint: str

    async def call(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        allow: tuple[int, ...] = (),
        answer_errors: bool = False,
    ):
        """The response; `allow` lists 4xx statuses handed back instead of raised. `answer_errors`
        hands back any error answer at once (no retry on 5xx: the caller names the server's
        message), retrying only transport errors."""
        url, last, unreachable = self.base + path, "", True
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with self.gate:
                    resp = await self.client.request(method, url, json=body)
            except httpx.TransportError as err:  # refused, reset, timed out
                last = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                unreachable &= isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout))
                continue
            unreachable = False
            if answer_errors:
                return resp
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code >= 400 and resp.status_code not in allow:
                raise ServerError(
                    f"{url} refused the request (HTTP {resp.status_code}): {resp.text[:300]}"
                )
            return resp
        if unreachable:
            raise ServerError(f"no server at {self.base} ({last}): start it with `{self.hint}`")
        raise ServerError(f"{url} failed {self.retries + 1} times (last: {last})")


class ServerPolicy:
    """What both engines share: local tokenisation, the sync API over many async requests, start-up
    checks, LoRA views. Subclasses say how a state is scored, a reply generated, and an adapter
    loaded."""

    engine = ""
    port = 0

    def __init__(
        self,
        url: str,
        model_path: str | Path,
        tokenizer=None,
        *,
        name: str | None = None,
        batch_size: int = 64,
        max_concurrency: int = 64,
        timeout_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
    ):
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.url, self.model_path, self.tokenizer = url.rstrip("/"), str(model_path), tokenizer
        self.name, self.batch_size = name or str(model_path), batch_size
        self.max_concurrency, self.timeout_s = max_concurrency, timeout_s
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.adapter: str | None = None  # the LoRA adapter this view's requests name
        # the id requests name the base model by (vLLM's `model`)
        self.served_name: str | None = None
        # loaded on the server, name -> path; shared by every view
        self._adapters: dict[str, str] = {}

    # -- tokens ------------------------------------------------------------------------------------
    def prompt(self, messages: list[dict]) -> str:
        return render_prompt(self.tokenizer, messages)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        return self.tokenizer(self.prompt(messages), add_special_tokens=False).input_ids

    def _reply(self, ids: list[int] | None, text: str) -> str:
        """A reply as `HFPolicy` decodes it: our tokenizer on the returned ids, special tokens
        skipped."""
        return text if ids is None else self.tokenizer.decode(ids, skip_special_tokens=True)

    # -- the policy --------------------------------------------------------------------------------
    def score(self, messages: list[list[dict]], candidates: list[list[str]]) -> list:
        """Log-likelihood of every candidate of every state; all states in flight at once
        (`max_concurrency`)."""
        # hf.py imports torch, which a server client does not need
        from teachable.policy.hf import Scores

        prompts = [self.prompt_ids(m) for m in messages]
        tokens = [[completion_ids(self.tokenizer, a) for a in cands] for cands in candidates]
        logliks = self._run(
            lambda http: asyncio.gather(
                *(self._score_state(http, p, t) if t else _empty() for p, t in zip(prompts, tokens))
            )
        )
        return [
            Scores(list(c), np.asarray(ll, dtype=np.float64)) for c, ll in zip(candidates, logliks)
        ]

    def generate(
        self,
        messages: list[list[dict]],
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> list[str]:
        """Free text replies without special tokens. Request i samples with seed + i, so identical
        prompts in one call get different samples, as they do in one HF batch."""
        prompts = [self.prompt_ids(m) for m in messages]
        return self._run(
            lambda http: asyncio.gather(
                *(
                    self._generate_one(http, p, max_new_tokens, temperature, seed + i)
                    for i, p in enumerate(prompts)
                )
            )
        )

    # -- start-up ----------------------------------------------------------------------------------
    def check(self) -> None:
        """The server answers, serves `model_path`, and tokenises a rendered prompt as we do (where
        it can)."""
        self._run(self._check)

    async def _check(self, http: _Http) -> None:
        served = await self._served_models(http)
        match = next((s for s in served if same_model(s, self.model_path)), None)
        if match is None:
            raise ServerError(
                f"{self.url} serves {sorted(served)}, not {self.model_path}: start it with "
                "that model, or set student.base_model to the local copy of the served one"
            )
        self.served_name = served[match]
        text = self.prompt(PROBE)
        theirs, ours = (
            await self._tokenize(http, text),
            self.tokenizer(text, add_special_tokens=False).input_ids,
        )
        if theirs is None:
            log.info(
                "%s has no tokenize endpoint: tokenisation not compared "
                "(token ids are sent anyway)",
                self.url,
            )
        elif list(theirs) != ours:
            at = next(
                (i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b),
                min(len(theirs), len(ours)),
            )
            raise ServerError(
                f"{self.url} tokenises a prompt unlike {self.model_path}'s tokenizer "
                f"(from token {at}: server {list(theirs[at : at + 4])}, local "
                f"{ours[at : at + 4]}): not the served model's copy"
            )
        log.info("%s serves %s (%s)", self.url, match, self.engine)

    # -- LoRA adapters -----------------------------------------------------------------------------
    def with_adapter(self, name: str, path: str | Path) -> ServerPolicy:
        """This policy with a LoRA adapter: loaded into the server once, then named in every request
        of the view. `name` is `adapter_name(path)` (a hash of the weights), so a name loaded once
        always means those weights."""
        path = str(Path(path).resolve())  # the server resolves it, from its own working directory
        if name not in self._adapters:
            self._run(lambda http: self._load_adapter(http, name, path))
            self._adapters[name] = path
        view = copy.copy(self)
        view.adapter = name
        return view

    def unload_adapter(self) -> None:
        """Frees the view's adapter on the server, which holds a bounded number of them."""
        if self.adapter in self._adapters:
            self._run(lambda http: self._unload_adapter(http, self.adapter))
            del self._adapters[self.adapter]

    # -- plumbing ----------------------------------------------------------------------------------
    def start_hint(self) -> str:
        raise NotImplementedError

    def _run(self, work):
        """Runs `work(http)` to completion on a fresh event loop: the API stays synchronous like
        HFPolicy's."""

        async def main():
            timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))
            limits = httpx.Limits(max_connections=self.max_concurrency)
            async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
                http = _Http(
                    client,
                    asyncio.Semaphore(self.max_concurrency),
                    self.url,
                    self.max_retries,
                    self.backoff_s,
                    self.start_hint(),
                )
                return await work(http)

        return asyncio.run(main())

    def _loaded(self, resp: httpx.Response, name: str, path: str) -> None:
        """A load answered: fine, or already loaded (the name is a hash of the weights, so the
        server holds these); any other answer stops with the server's own message (not retried: a
        load that failed fails again)."""
        message = server_message(resp)
        try:
            # SGLang's answer says so (with HTTP 400 today)
            refused = resp.json().get("success") is False
        except (ValueError, AttributeError):
            refused = False
        if resp.status_code == 200 and not refused:
            return
        if resp.status_code < 500 and "already" in message.lower():
            log.info("adapter %s (these weights) was already loaded on %s", name, self.url)
            return
        hint = f"; start it with `{self.start_hint()}`" if resp.status_code == 404 else ""
        raise ServerError(
            f"{self.url} could not load LoRA adapter {name} from {path} (HTTP {resp.status_code}): "
            f"{message}{hint}"
        )


async def _empty() -> list[float]:
    return []


def _mismatch(url: str, what: str) -> ServerError:
    return ServerError(
        f"{url} returned log-probs that do not match the candidate's tokens ({what}): an engine "
        "version whose response differs from the one this client was written for"
    )


class SGLangPolicy(ServerPolicy):
    """SGLang's native API: POST /generate (fields: python/sglang/srt/managers/io_struct.py
    GenerateReqInput, sampling/sampling_params.py), GET /get_model_info, POST /tokenize, POST
    /load_lora_adapter and /unload_lora_adapter (entrypoints/http_server.py). Preferred for scoring:
    a state's prompt is prefilled once and RadixAttention serves every candidate's prefill from that
    cache."""

    engine, port = "sglang", 30000

    def start_hint(self) -> str:
        return (
            f"python -m sglang.launch_server --model-path {self.model_path} --port {self.port} "
            "[--enable-lora --max-lora-rank R --lora-target-modules all]"
        )

    def _lora(self, n: int | None = None) -> dict:
        if self.adapter is None:
            return {}
        return {"lora_path": self.adapter if n is None else [self.adapter] * n}

    async def _score_state(
        self, http: _Http, prompt: list[int], cands: list[list[int]]
    ) -> list[float]:
        """`input_token_logprobs` holds (logprob, token id, text) from position `logprob_start_len`
        on, the first entry None (scheduler_output_processor_mixin.py: `[None] +
        input_token_logprobs[:-1]`); starting at the prompt's last token, entries 1.. are the
        candidate's tokens."""
        await http.call(
            "POST",
            "/generate",
            {"input_ids": prompt, "sampling_params": {"max_new_tokens": 0}, **self._lora()},
        )
        resp = await http.call(
            "POST",
            "/generate",
            {
                "input_ids": [prompt + c for c in cands],
                "sampling_params": {"max_new_tokens": 0},
                "return_logprob": True,
                "logprob_start_len": len(prompt) - 1,
                **self._lora(len(cands)),
            },
        )
        out = resp.json()
        out = [out] if isinstance(out, dict) else out
        if len(out) != len(cands):
            raise _mismatch(self.url, f"{len(out)} answers to {len(cands)} candidates")
        sums = []
        for item, cand in zip(out, cands):
            tail = item["meta_info"]["input_token_logprobs"][-len(cand) :]
            if [int(t[1]) for t in tail] != cand or any(t[0] is None for t in tail):
                raise _mismatch(self.url, f"{tail} for {cand}")
            sums.append(float(sum(t[0] for t in tail)))
        return sums

    async def _generate_one(self, http, prompt, max_new_tokens, temperature, seed) -> str:
        # SamplingParams.stop_token_ids
        sampling = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "stop_token_ids": stop_token_ids(self.tokenizer),
        }
        if temperature > 0:
            sampling["sampling_seed"] = seed
        out = (
            await http.call(
                "POST",
                "/generate",
                {"input_ids": prompt, "sampling_params": sampling, **self._lora()},
            )
        ).json()
        return self._reply(out.get("output_ids"), out.get("text", ""))

    async def _served_models(self, http) -> dict[str, str]:
        return {(await http.call("GET", "/get_model_info")).json()["model_path"]: None}

    async def _tokenize(self, http, text: str) -> list[int] | None:
        resp = await http.call(
            "POST", "/tokenize", {"prompt": text, "add_special_tokens": False}, allow=(404,)
        )
        return None if resp.status_code == 404 else resp.json()["tokens"]

    async def _load_adapter(self, http, name: str, path: str) -> None:
        resp = await http.call(
            "POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path}, answer_errors=True
        )
        self._loaded(resp, name, path)

    async def _unload_adapter(self, http, name: str) -> None:
        await http.call("POST", "/unload_lora_adapter", {"lora_name": name}, allow=(400,))


class VLLMPolicy(ServerPolicy):
    """vLLM's OpenAI-compatible server: POST /v1/completions
    (vllm/entrypoints/openai/completion/protocol.py CompletionRequest: token-id prompts,
    `prompt_logprobs`, `seed`, `return_token_ids`), GET /v1/models, POST /tokenize
    (entrypoints/serve/tokenize), POST /v1/load_lora_adapter and /v1/unload_lora_adapter
    (entrypoints/serve/lora; the server needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
    and --enable-lora). Scoring is slower than SGLang's: vLLM computes prompt log-probs with the
    prefix cache bypassed, so every candidate's whole prompt is prefilled again
    (docs/usage/v1_guide.md, "Prompt Logprobs with Prefix Caching")."""

    engine, port = "vllm", 8000

    def start_hint(self) -> str:
        return (
            f"[VLLM_ALLOW_RUNTIME_LORA_UPDATING=True] vllm serve {self.model_path} "
            f"--port {self.port} [--enable-lora --max-lora-rank R]"
        )

    def _model(self) -> dict:
        model = self.adapter or self.served_name
        return {} if model is None else {"model": model}

    async def _score_state(self, http, prompt: list[int], cands: list[list[int]]) -> list[float]:
        """`prompt_logprobs[i]` maps token ids (as strings) to {logprob, rank, decoded_token} for
        prompt position i, None at 0; with 0 it holds just the prompt's own token. max_tokens 1: the
        one sampled token is ignored."""
        resp = await http.call(
            "POST",
            "/v1/completions",
            {
                **self._model(),
                "prompt": [prompt + c for c in cands],
                "max_tokens": 1,
                "prompt_logprobs": 0,
            },
        )
        choices = sorted(resp.json()["choices"], key=lambda ch: ch["index"])
        if len(choices) != len(cands):
            raise _mismatch(self.url, f"{len(choices)} answers to {len(cands)} candidates")
        sums = []
        for choice, cand in zip(choices, cands):
            positions = choice["prompt_logprobs"][len(prompt) :]
            try:
                values = [positions[j][str(t)] for j, t in enumerate(cand)]
            except (KeyError, IndexError, TypeError):
                raise _mismatch(self.url, f"{positions} for {cand}") from None
            sums.append(float(sum(v["logprob"] if isinstance(v, dict) else v for v in values)))
        return sums

    async def _generate_one(self, http, prompt, max_new_tokens, temperature, seed) -> str:
        body = {
            **self._model(),
            "prompt": prompt,
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            # CompletionRequest.stop_token_ids
            "stop_token_ids": stop_token_ids(self.tokenizer),
            "return_token_ids": True,
            "skip_special_tokens": True,
        }
        if temperature > 0:
            body["seed"] = seed
        choice = (await http.call("POST", "/v1/completions", body)).json()["choices"][0]
        return self._reply(choice.get("token_ids"), choice.get("text", ""))

    async def _served_models(self, http) -> dict[str, str]:
        """Each model's id and its `root` (the path it was loaded from), both naming the id requests
        use; LoRA adapters, listed with their base model as `parent`, left out."""
        data = (await http.call("GET", "/v1/models")).json()["data"]
        bases = [m for m in data if not m.get("parent")]
        return {
            **{m["root"]: m["id"] for m in bases if m.get("root")},
            **{m["id"]: m["id"] for m in bases},
        }

    async def _tokenize(self, http, text: str) -> list[int] | None:
        resp = await http.call(
            "POST",
            "/tokenize",
            {**self._model(), "prompt": text, "add_special_tokens": False},
            allow=(404,),
        )
        return None if resp.status_code == 404 else resp.json()["tokens"]

    async def _load_adapter(self, http, name: str, path: str) -> None:
        resp = await http.call(
            "POST",
            "/v1/load_lora_adapter",
            {"lora_name": name, "lora_path": path},
            answer_errors=True,
        )
        self._loaded(resp, name, path)

    async def _unload_adapter(self, http, name: str) -> None:
        await http.call("POST", "/v1/unload_lora_adapter", {"lora_name": name}, allow=(400, 404))


ENGINES = {"sglang": SGLangPolicy, "vllm": VLLMPolicy}


def server_policy(backend: str, url: str, model_path: str | Path, **kwargs) -> ServerPolicy:
    return ENGINES[backend](url, model_path, **kwargs)


def compare_with_hf(
    backend: str, url: str, model_path: str, n_states: int = 8
) -> tuple[float, int]:
    """The largest |score difference| between the server and the in-process model, and how many
    greedy replies agree, on `n_states` BabyAI states."""
    from teachable.envs.babyai import ACTIONS
    from teachable.policy.hf import HFPolicy

    states = [
        build_messages("go to the red ball", f"You see: red ball {i + 1} forward.", ACTIONS)
        for i in range(n_states)
    ]
    cands = [ACTIONS[: 2 + i % (len(ACTIONS) - 1)] for i in range(n_states)]
    server = server_policy(backend, url, model_path)
    server.check()
    local = HFPolicy.load(model_path)
    diff = max(
        float(np.abs(a.logliks - b.logliks).max())
        for a, b in zip(server.score(states, cands), local.score(states, cands))
    )
    agree = sum(a == b for a, b in zip(server.generate(states, 16), local.generate(states, 16)))
    return diff, agree


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if len(sys.argv) != 4 or sys.argv[1] not in ENGINES:
        sys.exit("usage: python -m teachable.policy.server sglang|vllm URL MODEL_PATH")
    largest, same = compare_with_hf(*sys.argv[1:])
    print(f"largest |score difference| {largest:.2e}; greedy replies equal on {same} of 8 states")
