"""A stand-in for an SGLang or vLLM server in tests: a real HTTP server on 127.0.0.1 (a free port, a
thread) that answers exactly the requests `teachable.policy.server` sends, from an in-process HF
causal LM.

Per flavour:
  sglang  POST /generate, GET /get_model_info, POST /tokenize, POST /load_lora_adapter,
          /unload_lora_adapter
  vllm    POST /v1/completions, GET /v1/models, POST /tokenize, POST /v1/load_lora_adapter,
          /unload_...
Responses have the engines' shapes (see the docstrings of SGLangPolicy and VLLMPolicy): SGLang's
`input_token_logprobs` starts with a None entry at `logprob_start_len`, vLLM's `prompt_logprobs`
with None at 0. Every request is recorded in `calls`, every generated id list in `outputs`; `faults`
(an HTTP status, or seconds to stall) are served to the next requests, one each, before they are
answered normally; `load_errors` ((status, message) pairs) answer the next adapter loads in the
engine's own error shape (SGLang {success: false, error_message}, vLLM {error: {message, type,
code}}). Generation stops at the served model's eos (its generation_config, as an engine's) and at
the request's `stop_token_ids` (SGLang: in sampling_params; vLLM: top level).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


class Refused(Exception):
    def __init__(self, status: int, payload):
        super().__init__(payload)
        self.status, self.payload = status, payload


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    # a client that timed out and left: expected here
    def handle_error(self, request, client_address):
        pass


class FakeEngine:
    def __init__(
        self,
        model_dir,
        flavour: str,
        served_name: str | None = None,
        tokenizer=None,
        tokenize_endpoint: bool = True,
    ):
        assert flavour in ("sglang", "vllm")
        self.flavour, self.served_name = flavour, served_name or str(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.model_tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer = tokenizer or self.model_tokenizer  # what /tokenize answers with
        self.tokenize_endpoint = tokenize_endpoint
        self.adapters: dict[str, PeftModel] = {}
        self.calls: list[tuple[str, dict | None]] = []
        self.outputs: list[list[int]] = []
        self.faults: list[int | float] = []
        self.load_errors: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeEngine:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]

    # -- HTTP --------------------------------------------------------------------------------------
    def _handler(self):
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, payload) -> None:
                data = (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )
                self.send_response(status)
                self.send_header(
                    "Content-Type", "text/plain" if isinstance(payload, str) else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                with engine._lock:
                    engine.calls.append((self.path, body))
                    fault = engine.faults.pop(0) if engine.faults else None
                if isinstance(fault, float):
                    time.sleep(fault)
                elif fault is not None:
                    return self._answer(fault, f"injected HTTP {fault}")
                try:
                    self._answer(200, engine.answer(method, self.path, body))
                except Refused as err:
                    self._answer(err.status, err.payload)

            def do_GET(self):
                self._serve("GET")

            def do_POST(self):
                self._serve("POST")

        return Handler

    def answer(self, method: str, path: str, body):
        routes = {
            "sglang": {
                ("GET", "/get_model_info"): self.sglang_model_info,
                ("POST", "/generate"): self.sglang_generate,
                ("POST", "/load_lora_adapter"): self.load_adapter,
                ("POST", "/unload_lora_adapter"): self.unload_adapter,
            },
            "vllm": {
                ("GET", "/v1/models"): self.vllm_models,
                ("POST", "/v1/completions"): self.vllm_completions,
                ("POST", "/v1/load_lora_adapter"): self.load_adapter,
                ("POST", "/v1/unload_lora_adapter"): self.unload_adapter,
            },
        }[self.flavour]
        if self.tokenize_endpoint:
            routes[("POST", "/tokenize")] = self.tokenize
        if (method, path) not in routes:
            raise Refused(404, {"detail": "Not Found"})
        return routes[(method, path)](body)

    # -- the model ---------------------------------------------------------------------------------
    def model_for(self, adapter: str | None):
        if adapter is None or adapter == self.served_name:
            return self.model
        if adapter not in self.adapters:
            raise Refused(
                400 if self.flavour == "sglang" else 404, f"unknown LoRA adapter or model {adapter}"
            )
        return self.adapters[adapter]

    @torch.inference_mode()
    def token_logprobs(self, model, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i >= 1."""
        with self._lock:
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        logp = torch.log_softmax(logits, dim=-1)
        return logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].tolist()

    @torch.inference_mode()
    def complete(
        self, model, ids: list[int], max_new: int, temperature: float, seed: int | None, stop_ids=()
    ) -> list[int]:
        if max_new == 0:
            return []
        sampling = (
            {"do_sample": True, "temperature": temperature}
            if temperature > 0
            else {"do_sample": False}
        )
        eos = self.model.generation_config.eos_token_id
        stops = list(dict.fromkeys([*(eos if isinstance(eos, list) else [eos]), *(stop_ids or [])]))
        with self._lock:
            torch.manual_seed(seed or 0)
            out = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=max_new,
                pad_token_id=self.model_tokenizer.pad_token_id,
                eos_token_id=[s for s in stops if s is not None],
                **sampling,
            )
        new = out[0, len(ids) :].tolist()  # one sequence: no padding after a stop
        self.outputs.append(new)
        return new

    def decode(self, ids: list[int]) -> str:
        return self.model_tokenizer.decode(ids, skip_special_tokens=True)

    # -- shared endpoints --------------------------------------------------------------------------
    def tokenize(self, body):
        tokens = self.tokenizer(
            body["prompt"], add_special_tokens=body.get("add_special_tokens", True)
        ).input_ids
        return {"tokens": tokens, "count": len(tokens), "max_model_len": 1024}

    def refuse(self, status: int, message: str):
        """An error answer in the engine's shape."""
        if self.flavour == "sglang":
            return Refused(
                status, {"success": False, "error_message": message, "loaded_adapters": {}}
            )
        return Refused(
            status,
            {
                "error": {
                    "message": message,
                    "type": "BadRequestError" if status < 500 else "InternalServerError",
                    "param": None,
                    "code": status,
                }
            },
        )

    def load_adapter(self, body):
        name = body["lora_name"]
        if self.load_errors:
            raise self.refuse(*self.load_errors.pop(0))
        if name in self.adapters:
            raise self.refuse(400, f"The lora adapter '{name}' has already been loaded.")
        self.adapters[name] = PeftModel.from_pretrained(
            copy.deepcopy(self.model), body["lora_path"]
        ).eval()
        return (
            {"success": True}
            if self.flavour == "sglang"
            else f"Success: LoRA adapter '{name}' added successfully."
        )

    def unload_adapter(self, body):
        if self.adapters.pop(body["lora_name"], None) is None:
            raise Refused(400, f"adapter {body['lora_name']} is not loaded")
        return {"success": True} if self.flavour == "sglang" else "Success"

    # -- SGLang ------------------------------------------------------------------------------------
    def sglang_model_info(self, _):
        return {
            "model_path": self.served_name,
            "tokenizer_path": self.served_name,
            "is_generation": True,
        }

    def sglang_generate(self, body):
        single = isinstance(body["input_ids"][0], int)
        batch = [body["input_ids"]] if single else body["input_ids"]
        lora = body.get("lora_path")
        loras = lora if isinstance(lora, list) else [lora] * len(batch)
        sampling = body.get("sampling_params") or {}
        start = body.get("logprob_start_len", -1)
        out = []
        for ids, adapter in zip(batch, loras, strict=True):
            model = self.model_for(adapter)
            new = self.complete(
                model,
                ids,
                sampling.get("max_new_tokens", 128),
                sampling.get("temperature", 1.0),
                sampling.get("sampling_seed"),
                sampling.get("stop_token_ids"),
            )
            meta = {"prompt_tokens": len(ids), "completion_tokens": len(new)}
            if body.get("return_logprob"):
                start = len(ids) - 1 if start == -1 else start
                if not 0 <= start < len(ids):
                    raise Refused(400, "logprob_start_len must be less than the input length")
                logp = [None, *self.token_logprobs(model, ids)]
                meta["input_token_logprobs"] = [[None, ids[start], None]] + [
                    [logp[i], ids[i], None] for i in range(start + 1, len(ids))
                ]
            out.append({"text": self.decode(new), "output_ids": new, "meta_info": meta})
        return out[0] if single else out

    # -- vLLM --------------------------------------------------------------------------------------
    def vllm_models(self, _):
        base = [
            {"id": self.served_name, "object": "model", "root": self.served_name, "parent": None}
        ]
        return {
            "object": "list",
            "data": base
            + [
                {"id": name, "object": "model", "root": str(name), "parent": self.served_name}
                for name in self.adapters
            ],
        }

    def vllm_completions(self, body):
        prompt = body["prompt"]
        if isinstance(prompt, str) or not prompt:
            raise Refused(400, "this fake takes token-id prompts only")
        batch = [prompt] if isinstance(prompt[0], int) else prompt
        model = self.model_for(body.get("model"))
        choices = []
        for i, ids in enumerate(batch):
            new = self.complete(
                model,
                ids,
                body.get("max_tokens", 16),
                body.get("temperature", 1.0),
                body.get("seed"),
                body.get("stop_token_ids"),
            )
            choice = {"index": i, "text": self.decode(new), "finish_reason": "stop"}
            if body.get("return_token_ids"):
                choice.update(token_ids=new, prompt_token_ids=ids)
            if body.get("prompt_logprobs") is not None:
                logp = self.token_logprobs(model, ids)
                choice["prompt_logprobs"] = [None] + [
                    {
                        str(t): {
                            "logprob": lp,
                            "rank": 1,
                            "decoded_token": self.model_tokenizer.decode([t]),
                        }
                    }
                    for t, lp in zip(ids[1:], logp)
                ]
            choices.append(choice)
        return {
            "id": "cmpl-fake",
            "object": "text_completion",
            "model": body.get("model") or self.served_name,
            "choices": choices,
            "usage": {"prompt_tokens": sum(map(len, batch))},
        }
