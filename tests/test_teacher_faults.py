"""Faults of an OpenAI-compatible teacher, against the fake server on 127.0.0.1 (the real client
over real HTTP): errors that asking again will not cure stop the stage (before any work when
possible), calls that get no answer stop it after `max_consecutive_failures`, unusable answers are
capped by `max_fallback_fraction`, the spend ledger holds across reruns, and the key is never
written anywhere.

Only classes the teacher had before these faults were handled are imported (the new ones subclass
TeacherConfigError), so that each test fails on the old code for what it checks, not for an
import."""

import contextlib
import json
import logging
import socket
from pathlib import Path

import pytest
import yaml

from teachable.core.params import Params, TeacherParams
from teachable.teacher import make_teacher
from teachable.teacher.openai_teacher import BudgetExceeded, TeacherConfigError

# (fixtures)
from tests.test_openai_teacher import KEY, FakeServer, answer, completion, env, server  # noqa: F401

FAST = {"client_retries": 0, "timeout_s": 2}


def teacher(base_url, **kw):
    return make_teacher(TeacherParams.defaults(name="openai", base_url=base_url, **{**FAST, **kw}))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there: connection refused


def no_key_anywhere(tmp_path: Path, *texts: str) -> None:
    stored = [
        p.read_text(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix != ".db"
    ]
    assert stored and not any(KEY in text for text in [*stored, *texts])


# --- 1. errors that asking again will not cure ----------------------------------------------------


def test_a_wrong_key_stops_before_any_work(server, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    server.key = "sk-the-one-the-server-takes-0000"  # ours is refused; the server quotes it back
    with pytest.raises(TeacherConfigError) as err:
        teacher(server.base_url)
    assert (
        str(err.value)
        == f"teacher: authentication failed at {server.base_url} (401): check OPENAI_API_KEY"
    )
    assert server.requests == [] and len(server.gets) == 1  # one cheap GET, no paid request
    assert KEY not in caplog.text


def test_an_unreachable_server_stops_before_any_work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    url = closed_port_url()
    with pytest.raises(
        TeacherConfigError, match=rf"cannot connect to {url} \(.*refused.*\).*teacher.base_url"
    ):
        teacher(url)


def test_a_hanging_server_stops_before_any_work(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.hang = {"GET", "POST"}
    with pytest.raises(
        TeacherConfigError, match=r"no answer from .* within timeout_s=0.2s \(1 tries a call\)"
    ):
        teacher(server.base_url, timeout_s=0.2)
    assert server.requests == []


def test_an_unknown_model_stops_before_any_work(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        TeacherConfigError, match=r"unknown model 'gpt-nope' at .*\(404: The model 'gpt-nope' does "
    ):
        teacher(server.base_url, model="gpt-nope")
    assert server.requests == []


def test_a_server_without_a_models_endpoint_is_checked_with_one_token(
    server, env, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    server.models = None  # GET /models and /models/{id} are 404 routes: not a verdict on the model
    server.script = [(200, completion("OK")), (200, completion(answer("go forward")))]
    t = teacher(server.base_url)
    # the probe is counted
    assert server.requests[0]["body"]["max_tokens"] == 1 and t.ledger["calls"] == 1
    assert t.advise(env, None).valid


def test_a_base_url_without_v1_is_told_apart_from_an_unknown_model(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.models = None
    server.script = [(404, {"detail": "Not Found"})]
    with pytest.raises(
        TeacherConfigError,
        match=r"404 to model 'gpt-4o-mini', to the model list and to a chat "
        r"request .*check teacher.base_url \(does it end in /v1\?\)",
    ):
        teacher(server.base_url)


@pytest.mark.parametrize("chat", ["serves any name", "unknown"])
def test_a_model_the_list_lacks_is_asked_once(server, tmp_path, monkeypatch, chat):
    monkeypatch.chdir(tmp_path)
    # a list, no GET /models/{id}
    server.retrieve_route, server.models = False, {"llama-3-8b", "qwen3-8b"}
    if chat == "serves any name":  # llama.cpp: one model, whatever the request names
        server.script = [(200, completion("OK"))]
        teacher(server.base_url, model="gpt-4o-mini")
    else:
        server.script = [(404, {"error": {"message": "model 'gpt-nope' not found", "code": None}})]
        with pytest.raises(
            TeacherConfigError, match="unknown model 'gpt-nope' .*it serves: llama-3-8b, qwen3-8b"
        ):
            teacher(server.base_url, model="gpt-nope")
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "status, body, cause",
    [
        (
            401,
            {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
            r"authentication failed at .* \(401\): check OPENAI_API_KEY",
        ),
        (
            403,
            {"error": {"message": f"key {KEY} may not use this model"}},
            r"permission denied .*\(403\).*key \*\*\* may",
        ),
        (
            404,
            {
                "error": {
                    "message": "The model 'gpt-4o-mini' does not exist",
                    "code": "model_not_found",
                }
            },
            r"answered 404 for model 'gpt-4o-mini'",
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "code": "insufficient_quota",
                    "type": "insufficient_quota",
                }
            },
            r"quota at .* is exhausted",
        ),
    ],
)
def test_a_permanent_error_mid_run_raises_never_falls_back(
    server, env, tmp_path, monkeypatch, caplog, status, body, cause
):
    monkeypatch.chdir(tmp_path)
    server.script = [(status, body)] * 2
    t = teacher(server.base_url, retries=2, client_retries=1)
    with pytest.raises(TeacherConfigError, match=cause) as err:
        t.advise(env, None)
    # not asked again (a 429 only by the client itself), no oracle advice
    assert len(server.requests) == 1 + (status == 429) and t.ledger["invalid"] == 0
    assert KEY not in str(err.value) and KEY not in caplog.text


# --- 3. calls that get no answer ------------------------------------------------------------------


@pytest.mark.heavy
def test_a_server_that_never_answers_stops_after_max_consecutive_failures(
    server, env, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    t = teacher(server.base_url, timeout_s=0.2, retries=5, max_consecutive_failures=3)
    server.hang = {"POST"}
    with pytest.raises(
        TeacherConfigError,
        match=r"no answer from .* within timeout_s=0.2s .*\(3 calls in a row "
        r"got no answer: teacher.max_consecutive_failures=3\)",
    ):
        t.advise(env, None)
    assert len(server.requests) == 3  # not 6 asks x (1 + client retries), then a fallback


def test_a_server_gone_mid_run_stops_after_max_consecutive_failures(
    server, env, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    t = teacher(server.base_url, max_consecutive_failures=2)
    server.close()
    with pytest.raises(
        TeacherConfigError, match=r"cannot connect to .*2 calls in a row got no answer"
    ):
        t.advise(env, None)


def test_an_answer_resets_the_count_of_failures_in_a_row(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    boom = (500, {"error": {"message": "boom"}})
    server.script = [
        boom,
        (200, completion(answer("go forward"))),
        boom,
        (200, completion(answer("turn left"))),
    ]
    t = teacher(server.base_url, max_consecutive_failures=2)
    assert (
        t.advise(env, None).valid and t.advise(env, "pick up").valid and t.ledger["no_answer"] == 2
    )


# --- 2. the share of fallbacks --------------------------------------------------------------------


def test_fallbacks_are_capped_by_max_fallback_fraction(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good, bad = (200, completion(answer("go forward"))), (200, completion(answer("fly")))
    server.script = [bad, bad] + [good] * 7 + [bad]
    t = teacher(server.base_url, retries=0, max_fallback_fraction=0.2)
    advice = [t.advise(env, f"turn left {i}") for i in range(9)]  # 2 early fallbacks do not stop it
    assert [a.valid for a in advice] == [False, False] + [True] * 7
    with pytest.raises(
        TeacherConfigError,
        match=r"3 of the 10 answers so far from openai:gpt-4o-mini \(30%\) were "
        r"unusable.*max_fallback_fraction=0.2; the last: ValidationError",
    ):
        t.advise(env, "turn left 9")


def test_cached_answers_do_not_dilute_the_share_of_fallbacks(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("go forward")))] + [
        (200, completion(answer("fly")))
    ] * 10
    t = teacher(server.base_url, retries=0, max_fallback_fraction=0.5)
    for _ in range(20):
        t.advise(env, "turn left")  # one fresh answer, then the cache
    for i in range(5):
        # 5 of 6 fresh answers unusable, but fewer than 10 answers so far
        t.advise(env, f"pick up {i}")
    with pytest.raises(TeacherConfigError, match="9 of the 10 answers"):
        for i in range(5, 10):
            t.advise(env, f"pick up {i}")


# --- 4. the budget over runs ----------------------------------------------------------------------


def test_the_budget_holds_across_runs(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [
        (200, completion(answer(a))) for a in ("go forward", "turn left", "turn right")
    ]
    first = teacher(server.base_url, max_calls=2)  # a run ...
    first.advise(env, None)
    first.advise(env, "pick up")
    rerun = teacher(server.base_url, max_calls=2)  # ... and its rerun: the ledger is on disk
    assert rerun.advise(env, None).suggested_action == "go forward"  # cached: free
    with pytest.raises(
        BudgetExceeded, match=r"2 calls, \$0.0001 spent .* over all runs \(max_calls=2"
    ):
        rerun.advise(env, "drop")
    assert len(server.requests) == 2
    (ledger,) = tmp_path.glob(".cache/teacher/ledger-*.json")
    stored = json.loads(ledger.read_text())
    assert (
        stored["calls"] == 2 and stored["prompt_tokens"] == 200 and stored["model"] == "gpt-4o-mini"
    )
    assert stored["usd"] == pytest.approx(2 * (100 * 0.15 + 20 * 0.60) / 1e6)
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically
    teacher(server.base_url, max_calls=3).advise(env, "drop")  # a raised budget goes on from there
    assert len(server.requests) == 3 and json.loads(ledger.read_text())["calls"] == 3


# the fake server's usage on every reply, at the default prices
PER_CALL_USD = (100 * 0.15 + 20 * 0.60) / 1e6


@pytest.mark.parametrize(
    "content",
    [
        "garbage, not JSON at all",
        '{"suggested_action": "go forward", "diag',
        answer("fly"),
        answer("go forward").replace('"hint"', '"hunt"'),
    ],
)
def test_unusable_answers_are_charged_to_the_ledger(server, env, tmp_path, monkeypatch, content):
    """Issue 33: replies that could not be used carried usage but were logged as 0 tokens and $0.00,
    so max_usd was no limit for them. Every paid call is charged, usable or not."""
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(content))] * 2
    t = teacher(server.base_url, retries=1)
    assert t.advise(env, None).valid is False and len(server.requests) == 2
    assert t.ledger["prompt_tokens"] == 200 and t.ledger["completion_tokens"] == 40
    assert t.ledger["usd"] == pytest.approx(2 * PER_CALL_USD)
    (ledger,) = tmp_path.glob(".cache/teacher/ledger-*.json")
    stored = json.loads(ledger.read_text())
    assert (
        stored["calls"] == 2
        and stored["prompt_tokens"] == 200
        and stored["usd"] == pytest.approx(2 * PER_CALL_USD)
    )


def test_max_usd_is_a_hard_limit_for_unusable_answers(server, env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server.script = [(200, completion(answer("fly")))] * 10
    t = teacher(server.base_url, retries=0, max_usd=2.5 * PER_CALL_USD)
    for i in range(3):
        assert t.advise(env, f"turn left {i}").valid is False
    with pytest.raises(BudgetExceeded, match=r"3 calls, \$0\.0001 spent"):
        t.advise(env, "turn left 3")
    assert len(server.requests) == 3


def test_run_bounds_do_not_decide_reuse_of_finished_labels():
    from tests.project_copy import load_stage

    label = load_stage("label")
    base = Params.defaults()
    bounded = Params.defaults(
        teacher={
            "max_fallback_fraction": 0.5,
            "max_consecutive_failures": 7,
            "timeout_s": 5,
            "max_calls": 10,
            "max_usd": 1,
            "client_retries": 0,
        }
    )
    assert label.resume_key(bounded) == label.resume_key(base)
    # changes answers
    assert label.resume_key(Params.defaults(teacher={"retries": 0})) != label.resume_key(base)


# --- the stage: one line, exit code 2, finished work kept, no key anywhere (5) --------------------


def test_the_label_stage_stops_with_exit_2_and_keeps_finished_work(
    server, tmp_path, monkeypatch, capsys, caplog
):
    from teachable import stage as stage_module
    from teachable.core.params import SnapshotParams
    from teachable.envs import restore_env
    from teachable.labeling import resumable
    from teachable.core.records import write_jsonl
    from teachable.rollout.engine import RolloutEngine, RolloutSpec
    from teachable.rollout.snapshots import failure_snapshots
    from tests.project_copy import load_stage
    from tests.test_rollout import RecordingPolicy

    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    episodes = RolloutEngine(RecordingPolicy("turn left"), max_steps=6).run(
        [RolloutSpec(f"e{i}", "GoToLocal", i) for i in range(3)]
    )
    snapshots = failure_snapshots(episodes, SnapshotParams.defaults(max_snapshots=4), 2, seed=0)
    write_jsonl("data/snapshots.jsonl", snapshots)
    params = Params.defaults(
        env={"levels": ["GoToLocal"], "max_steps": 6},
        label={"chunk_size": 2},
        teacher={"name": "openai", "base_url": server.base_url, **FAST},
    )
    Path("params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))

    label = load_stage("label")
    logged = []

    @contextlib.contextmanager
    def stage_run(name, run_params):
        logged.append(json.dumps(run_params))
        yield type(
            "MLflow", (), {"log_metrics": staticmethod(lambda m: logged.append(json.dumps(m)))}
        )

    # the teacher's part of labeling, without the rollouts
    def label_chunk(chunk, policy, teacher, *_):
        records = []
        for snap in chunk:
            env = restore_env(snap.env, snap.state.model_dump(), snap.state_hash, 6)
            records.append(
                {
                    "snapshot_id": snap.snapshot_id,
                    "rollouts": {"total": 0, "n_per_arm": 0},
                    "teacher": teacher.advise(env, snap.student_action).model_dump(),
                }
            )
        return records

    monkeypatch.setattr(label, "stage_run", stage_run)
    monkeypatch.setattr(label, "load_student", lambda p: RecordingPolicy())
    monkeypatch.setattr(resumable, "label_chunk", label_chunk)
    server.script = [
        (200, completion(answer("go forward"))),
        (200, completion(answer("turn left"))),
        (
            401,
            {"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}},
        ),
    ]
    with pytest.raises(SystemExit) as exit_:
        stage_module.run(label.main, "params.yaml")
    err = capsys.readouterr().err  # the progress bar, then one line
    assert exit_.value.code == 2 and err.endswith(
        f"\nerror: teacher: authentication failed at {server.base_url} (401): "
        "check OPENAI_API_KEY; 2 snapshots labeled so far are kept, rerun to go on\n"
    )
    (scratch,) = tmp_path.glob(".scratch/label-*.jsonl")
    assert [json.loads(line)["teacher"]["valid"] for line in scratch.read_text().splitlines()] == [
        True,
        True,
    ]
    assert not Path(label.OUT).exists()
    no_key_anywhere(tmp_path, err, caplog.text, *logged)
