"""Who plays the retail customer (issue 31 item 4): the scripted user never gives an order id its
instruction withholds; the loader flags the instructions it cannot play (conditions, changes of
mind), kept or dropped by `retail.unplayable`; `retail.user: llm` is a model behind the
OpenAI-compatible client playing the instruction."""

import json
import re

import pytest

from teachable.core.params import Params, ParamsError, RetailParams
from teachable.envs.retail import RetailEnv, RetailWorld
from teachable.envs.retail.taubench import SPLITS, load_taubench, named_orders, unplayable_word
from teachable.envs.retail.user import ASK_ORDER
from teachable.envs.toolcall import format_call
from tests.taubench_fixture import write_checkout

ORDER_ID = re.compile(r"#W\d{7}")


def say(content: str) -> str:
    return format_call("respond", {"content": content})


@pytest.fixture
def checkout(tmp_path):
    return write_checkout(tmp_path / "tau_bench" / "envs" / "retail")


def play_expert(env):
    done, reward, info = False, 0.0, {}
    while not done:
        _, reward, terminated, truncated, info = env.step(env.expert_action())
        done = terminated or truncated
    return reward


def user_lines(env) -> list[str]:
    return [
        line
        for h in [*env.history, {"obs": env.observation}]
        for line in h["obs"].splitlines()
        if line.startswith("User: ")
    ]


# -- params ----------------------------------------------------------------------------------------
def test_user_params_default_and_validate():
    r = Params.defaults().retail
    assert (
        r.user,
        r.unplayable,
        r.user_llm.model,
        r.user_llm.base_url,
        r.user_llm.temperature,
    ) == ("scripted", "keep", "gpt-4o-mini", None, 0.0)
    for bad in (
        {"user": "human"},
        {"unplayable": "maybe"},
        {"user_llm": {"temperature": 3}},
        {"user_llm": {"modle": "x"}},
    ):
        with pytest.raises(ParamsError):
            RetailParams.defaults(**bad)


# -- 1. the scripted user withholds what its instruction withholds ---------------------------------
def test_named_orders():
    assert named_orders("Cancel #W7000002 and W7000004, not 12345.") == ("#W7000002", "#W7000004")
    assert named_orders("You want to return the travel mug.") == ()


def test_the_scripted_user_never_says_an_order_id_its_instruction_withholds(checkout):
    withheld = 0
    for split in SPLITS:
        data = load_taubench(checkout, split)
        world = RetailWorld(data.db, data.tasks)
        for seed, task in enumerate(data.tasks):
            env = RetailEnv("all", max_steps=30, world=world)
            env.reset(seed)
            # the expert still finishes: it looks the order up
            assert play_expert(env) == 1.0, task.key
            said = {i for line in user_lines(env) for i in ORDER_ID.findall(line)}
            assert said <= set(task.known_orders), (task.key, said, task.instruction)
            withheld += any(g.order_id not in task.known_orders for g in task.goals)
    assert withheld >= 3


def test_asked_which_order_the_user_names_items_and_the_agent_looks_it_up(checkout):
    data = load_taubench(checkout, "test")
    world = RetailWorld(data.db, data.tasks)
    env = RetailEnv("return", world=world)
    env.reset(0)
    assert env.task.known_orders == () and "#W7000001" not in env.task.instruction
    env.step(env.expert_action())  # identity
    env.step(env.expert_action())  # the lookup
    assert env.expert_action() == say(ASK_ORDER)
    obs, *_ = env.step(say(ASK_ORDER))
    assert "travel mug" in obs.lower() and not ORDER_ID.search(obs.split("\nKnown:")[0])
    assert "#W7000001" not in env.orders
    assert env.expert_action() == format_call("get_user_details", {"user_id": "nina_park_7301"})
    assert play_expert(env) == 1.0


def test_a_generated_user_still_knows_its_order_ids():
    env = RetailEnv("cancel")
    env.reset(3)
    assert env.task.known_orders == (env.task.goals[0].order_id,)
    env.step(env.expert_action())
    env.step(env.expert_action())
    obs, *_ = env.step(say(ASK_ORDER))
    assert env.task.goals[0].order_id in obs.split("\nKnown:")[0]


# -- 2. instructions the scripted user cannot play: flagged, kept or dropped, counted --------------
def test_unplayable_word_rule():
    assert unplayable_word("Return the mug; if that cannot be done, cancel the order.") == "if"
    assert unplayable_word("You prefer the red one.") == "prefer"
    assert (
        unplayable_word("Exchange it. Then you change your mind and keep it.") == "change your mind"
    )
    assert unplayable_word("Cancel it unless it has shipped.") == "unless"
    assert unplayable_word("Return the travel mug you received.") == ""
    assert unplayable_word("A gift for the office.") == ""  # whole words only


def test_unplayable_tasks_are_flagged_kept_or_dropped_and_counted(checkout, caplog):
    kept = load_taubench(checkout, "test")
    flagged = [t for t in kept.tasks if t.unplayable]
    assert flagged and kept.n_unplayable == len(flagged) and kept.unplayable == "keep"
    dropped = load_taubench(checkout, "test", unplayable="drop")
    assert [t.key for t in dropped.tasks] == [t.key for t in kept.tasks if not t.unplayable]
    assert dropped.skipped["unplayable by the scripted user"] == len(flagged)
    assert dropped.n_skipped == kept.n_skipped + len(flagged)
    with pytest.raises(ValueError, match="keep or drop"):
        load_taubench(checkout, "test", unplayable="ignore")
    caplog.set_level("INFO", logger="teachable.envs.retail.env")
    world = RetailWorld.shared(taubench_dir=str(checkout), task_split="test", unplayable="drop")
    assert f"{len(flagged)} flagged unplayable" in caplog.text and "dropped" in caplog.text
    assert world.counts() == {
        "retail_tasks": len(dropped.tasks),
        "retail_skipped": dropped.n_skipped,
        "retail_unplayable": len(flagged),
        "retail_unplayable_dropped": len(flagged),
    }
    assert (
        RetailWorld.shared(taubench_dir=str(checkout), task_split="test").counts()[
            "retail_unplayable_dropped"
        ]
        == 0
    )


def test_the_unplayable_param_reaches_the_environment(checkout):
    from teachable.envs import configure_envs

    params = Params.defaults(
        env={"name": "retail", "levels": ["all"]},
        retail={"source": "taubench", "taubench_dir": str(checkout), "unplayable": "drop"},
    )
    try:
        configure_envs(params)
        assert RetailEnv.unplayable == "drop"
        assert not any(t.unplayable for t in RetailEnv.shared_world().listed)
    finally:
        configure_envs(Params.defaults(env={"name": "retail", "levels": ["all"]}))
    assert RetailEnv.unplayable == "keep" and RetailEnv.taubench_dir is None


# -- 3. retail.user: llm, against a fake OpenAI-compatible server on 127.0.0.1 ---------------------
def _llm_params(checkout, base_url=None, **llm):
    return Params.defaults(
        env={"name": "retail", "levels": ["all"]},
        retail={
            "source": "taubench",
            "taubench_dir": str(checkout),
            "user": "llm",
            "user_llm": {"base_url": base_url, "client_retries": 0, "timeout_s": 5, **llm},
        },
    )


@pytest.fixture
def back_to_scripted():
    yield
    from teachable.envs import configure_envs

    configure_envs(
        Params.defaults(env={"name": "retail", "levels": ["all"]}, retail={"user": "scripted"})
    )
    assert RetailEnv.user_mode == "scripted"


def test_llm_user_without_a_key_fails_before_any_work(checkout, monkeypatch, back_to_scripted):
    from teachable.envs import configure_envs
    from teachable.teacher.base import TeacherConfigError
    from tests.test_openai_teacher import FakeServer

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fake = FakeServer()
    try:
        with pytest.raises(
            TeacherConfigError, match="retail.user is 'llm' but OPENAI_API_KEY is not set"
        ):
            configure_envs(_llm_params(checkout, fake.base_url))
        assert fake.requests == [] and fake.gets == [] and RetailEnv.user_mode == "scripted"
    finally:
        fake.close()


def test_llm_user_plays_the_instruction_through_the_teachers_client(
    checkout, tmp_path, monkeypatch, caplog, back_to_scripted
):
    from teachable.envs import configure_envs
    from teachable.envs.retail.user import ASK_IDENTITY, ASK_MORE, confirm_text, tell_text
    from tests.test_openai_teacher import KEY, FakeServer, completion

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    fake = FakeServer()
    try:
        fake.script = [
            (200, completion(text))
            for text in (
                "Hi, I'd like to return a travel mug I received.",
                "Sure: nina.park7301@example.com",
                "I think it was order W7000001.",
                "Yes, please go ahead.",
                "Good to know.",
                "Great, thanks! ###STOP###",
            )
        ]
        configure_envs(_llm_params(checkout, fake.base_url))
        assert fake.gets  # the pre-flight check ran when configured
        env = RetailEnv("return")
        env.reset(0)
        assert env.mission == "Hi, I'd like to return a travel mug I received."
        system = fake.requests[0]["body"]["messages"][0]
        assert system["role"] == "system" and env.task.instruction in system["content"]
        assert "###STOP###" in system["content"]
        assert fake.requests[0]["body"]["messages"][1]["role"] == "user"
        ret = env.task.actions[0]
        for action in [
            say(ASK_IDENTITY),
            format_call("find_user_id_by_email", {"email": "nina.park7301@example.com"}),
            say(ASK_ORDER),
            format_call("get_order_details", {"order_id": "#W7000001"}),
            say(confirm_text(ret)),
            ret,
            say(tell_text(24.5)),
        ]:
            _, _, _, _, info = env.step(action)
            assert info["valid"], action
        assert env.confirmed == [ret] and not env.ended
        _, reward, terminated, _, _ = env.step(say(ASK_MORE))
        assert terminated and reward == 1.0 and env.observation.startswith("User: Great, thanks!")
        last = fake.requests[-1]["body"]["messages"]
        assert [m["role"] for m in last] == ["system"] + ["user", "assistant"] * 5 + ["user"]
        # tool calls are never shown to it
        assert all("get_order_details" not in m["content"] for m in last)
        n = len(fake.requests)
        # the cache answers a replay: no new call
        replayed = RetailEnv.restore(env.state(), env.state_hash())
        assert len(fake.requests) == n and replayed.reward == 1.0
        stored = "".join(
            p.read_text() for p in (tmp_path / ".cache" / "retail_user").rglob("*.json")
        )
        ledger = json.loads(
            next((tmp_path / ".cache" / "retail_user").glob("ledger-*.json")).read_text()
        )
        assert ledger["calls"] == n and KEY not in stored and KEY not in caplog.text
    finally:
        fake.close()


def test_llm_user_budget_stops_cleanly(checkout, tmp_path, monkeypatch, back_to_scripted):
    from teachable.envs import configure_envs
    from teachable.teacher.base import BudgetExceeded
    from tests.test_openai_teacher import KEY, FakeServer, completion

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    fake = FakeServer()
    try:
        fake.script = [(200, completion("Hello, I need help."))]
        configure_envs(_llm_params(checkout, fake.base_url, max_calls=1))
        env = RetailEnv("return")
        env.reset(0)
        with pytest.raises(BudgetExceeded, match=r"retail.user_llm.max_calls"):
            env.step(say(ASK_ORDER))
    finally:
        fake.close()
