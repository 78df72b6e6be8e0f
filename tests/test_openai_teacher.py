"""The OpenAI teacher against a fake OpenAI-compatible server on 127.0.0.1: the real client over
real HTTP."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from teachable.core.params import TeacherParams
from teachable.envs import make_env
from teachable.teacher import make_teacher
from teachable.teacher.openai_teacher import BudgetExceeded, OpenAITeacher, TeacherConfigError

KEY = "sk-test-secret-do-not-log-1234"


def completion(content, refusal=None):
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content, "refusal": refusal},
            }
        ],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def answer(action):
    return json.dumps(
        {
            "suggested_action": action,
            "diagnosis": "The key is ahead.",
            "hint": "Look ahead.",
            "contrast": "Turning wastes a step.",
        }
    )


class FakeServer:
    """Replies to POSTs from a script of (status, body) pairs, one per request; remembers the
    requests. GETs are the models endpoints: `models` the ids it serves (None: no models endpoint at
    all), `retrieve_route` whether it has `GET /models/{id}`. `key`: the only key it takes (401
    otherwise, quoting the key it got, as some servers do). `hang`: the methods it never answers
    (until the test ends)."""

    def __init__(self):
        self.script, self.requests, self.gets = [], [], []
        self.models, self.retrieve_route, self.key, self.hang = {"gpt-4o-mini"}, True, None, set()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status, payload):
                data = (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def refused_key(self):
                auth = self.headers.get("Authorization")
                if server.key is None or auth == f"Bearer {server.key}":
                    return False
                self.reply(
                    401,
                    {
                        "error": {
                            "message": f"Incorrect API key provided: {auth}.",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    },
                )
                return True

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.requests.append(
                    {
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(body),
                    }
                )
                if "POST" in server.hang:
                    server.release.wait(10)
                    return
                if not self.refused_key():
                    self.reply(*server.script.pop(0))

            def do_GET(self):
                server.gets.append(self.path)
                if "GET" in server.hang:
                    server.release.wait(10)
                    return
                if self.refused_key():
                    return
                name = self.path.removeprefix("/v1/models").strip("/")
                if server.models is None or (name and not server.retrieve_route):
                    self.reply(404, {"detail": "Not Found"})
                elif not name:
                    self.reply(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {"id": m, "object": "model", "created": 0, "owned_by": "me"}
                                for m in sorted(server.models)
                            ],
                        },
                    )
                elif name in server.models:
                    self.reply(200, {"id": name, "object": "model", "created": 0, "owned_by": "me"})
                else:
                    self.reply(
                        404,
                        {
                            "error": {
                                "message": f"The model '{name}' does not exist",
                                "type": "invalid_request_error",
                                "param": "model",
                                "code": "model_not_found",
                            }
                        },
                    )

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    fake = FakeServer()
    yield fake
    fake.close()


@pytest.fixture
def env():
    e = make_env("babyai", "GoToObj")
    e.reset(0)
    return e


def teacher(server, tmp_path, **kw):
    params = TeacherParams.defaults(
        name="openai", base_url=server.base_url, client_retries=1, timeout_s=5, **kw
    )
    return make_teacher(params), params


def test_good_answer_is_used_and_cached(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("go forward")))]
    t, _ = teacher(server, tmp_path)
    advice = t.advise(env, "turn left")
    assert (
        advice.suggested_action == "go forward"
        and advice.valid
        and advice.source == "openai:gpt-4o-mini"
    )
    schema = server.requests[0]["body"]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["suggested_action"]["enum"] == env.valid_actions()
    assert (
        server.requests[0]["body"]["temperature"] == 0
        and server.requests[0]["body"]["max_tokens"] == 256
    )
    # the rerun costs nothing
    assert t.advise(env, "turn left") == advice and len(server.requests) == 1
    assert t.ledger["usd"] == pytest.approx((100 * 0.15 + 20 * 0.60) / 1e6)


def test_invalid_action_is_retried_then_falls_back_to_the_oracle(
    server, env, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("fly")))] * 3
    t, _ = teacher(server, tmp_path, retries=2)
    advice = t.advise(env, "turn left")
    assert (
        len(server.requests) == 3
        and not advice.valid
        and advice.source == "openai:gpt-4o-mini->oracle"
    )
    assert advice.suggested_action == env.expert_action() and t.ledger["invalid"] == 1


def test_malformed_json_then_a_good_answer(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion("{not json")), (200, completion(answer("turn right")))]
    (advice,) = [teacher(server, tmp_path)[0].advise(env, None)]
    assert advice.valid and advice.suggested_action == "turn right" and len(server.requests) == 2


@pytest.mark.heavy
def test_429_then_success_is_retried_by_the_client(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [
        (429, {"error": {"message": "slow down"}}),
        (200, completion(answer("pick up"))),
    ]
    assert teacher(server, tmp_path)[0].advise(env, None).suggested_action == "pick up"


@pytest.mark.heavy
def test_a_server_error_is_asked_again_never_a_fallback(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(500, {"error": {"message": "boom"}})] * 2 + [
        (200, completion(answer("pick up")))
    ]
    t, _ = teacher(server, tmp_path, retries=0)  # a call with no answer does not use up a re-ask
    advice = t.advise(env, None)
    assert advice.valid and advice.suggested_action == "pick up" and len(server.requests) == 3
    assert t.ledger["no_answer"] == 1 and t.ledger["invalid"] == 0


def test_unusable_answers_end_in_a_drop_when_asked(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("fly")))] * 2
    t, _ = teacher(server, tmp_path, retries=1, on_invalid="drop")
    assert t.advise(env, None) is None and len(server.requests) == 2 and t.ledger["invalid"] == 1


def test_refusal_is_unusable(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(None, refusal="I can't help with that."))]
    t, _ = teacher(server, tmp_path, retries=0)
    assert t.advise(env, None).valid is False


def test_budget_stops_cleanly(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("go forward")))]
    t, _ = teacher(server, tmp_path, max_calls=1)
    t.advise(env, "turn left")
    env.step("turn left")
    with pytest.raises(BudgetExceeded, match="max_calls=1"):
        t.advise(env, "turn left")


def test_missing_key_fails_before_any_work(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(TeacherConfigError, match="OPENAI_API_KEY is not set"):
        OpenAITeacher(TeacherParams.defaults(name="openai"))


def test_the_key_never_reaches_cache_or_ledger(server, env, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("fly"))), (200, completion(answer("go forward")))]
    t, _ = teacher(server, tmp_path)
    t.advise(env, None)
    assert server.requests[0]["auth"] == f"Bearer {KEY}"  # sent to the server, and nowhere else
    stored = "".join(p.read_text() for p in (tmp_path / ".cache").rglob("*.json"))
    assert (
        stored and KEY not in stored and KEY not in json.dumps(t.ledger) and KEY not in caplog.text
    )
