"""tau-bench's retail as tau-bench lays it out: a checkout (invented, written by
tests/taubench_fixture.py in tau-bench's file layout and field names) loads for every task split;
every one of tau-bench's 16 tools has its outputs, error strings and database effects; each task's
gold calls replayed leave the database tau-bench's tools leave (worked out by hand) and score 1 by
tau-bench's rule; the environment plays every task it loads."""

import copy
import json

import pytest

from teachable.core.params import ParamsError, RetailParams
from teachable.envs.retail import RetailEnv, RetailWorld
from teachable.envs.retail.database import DBView, db_json, load_db
from teachable.envs.retail.env import TRANSFER
from teachable.envs.retail.taubench import (
    SPLITS,
    episode_reward,
    gold_view,
    load_taubench,
    read_tasks,
    replay_gold,
)
from teachable.envs.retail.tools import call_tool
from teachable.envs.retail.user import ASK_IDENTITY, ASK_ORDER, confirm_text
from teachable.envs.toolcall import format_call
from tests.taubench_fixture import TASKS, expected_db, write_checkout


def say(content: str) -> str:
    return format_call("respond", {"content": content})


@pytest.fixture
def checkout(tmp_path):
    return write_checkout(tmp_path / "tau_bench" / "envs" / "retail")


@pytest.fixture
def db(checkout):
    base = load_db(checkout / "data")
    snapshot = copy.deepcopy(base)
    yield DBView(base)
    assert base == snapshot, "a tool mutated the shared base database"


def run(db, name, **args):
    return call_tool(db, name, args)


# -- the checkout ----------------------------------------------------------------------------------
def test_the_fixture_is_in_taubench_layout(checkout):
    data = load_db(checkout / "data")
    # tau-bench's users: keyed by id only
    assert all("user_id" not in user for user in data["users"].values())
    assert all(order["user_id"] in data["users"] for order in data["orders"].values())
    for split in SPLITS:
        text = (checkout / f"tasks_{split}.py").read_text()
        assert (
            text.startswith("from tau_bench.types import Task, Action")
            and f"TASKS_{split.upper()} = [" in text
        )


def test_every_split_loads(checkout):
    expected = {
        "test": (
            7,
            ["return", "exchange", "cancel", "modify_items", "cancel", "none"],
            {"the scripted user cannot ask for modify_user_address": 1},
        ),
        "train": (
            3,
            ["return", "two_writes"],
            {"the scripted user cannot ask for modify_pending_order_payment": 1},
        ),
        "dev": (2, ["cancel"], {"unknown user": 1}),
    }
    for split, (n_raw, families, skipped) in expected.items():
        data = load_taubench(checkout, split)
        assert (data.split, len(data.raw), [t.family for t in data.tasks], data.skipped) == (
            split,
            n_raw,
            families,
            skipped,
        )
        assert len(data.tasks) + data.n_skipped == len(data.raw)
        assert all(t.key.startswith(f"taubench:{split}:") for t in data.tasks)
    with pytest.raises(ValueError, match="split"):
        read_tasks(checkout, "validation")


def test_the_task_split_param_is_validated():
    assert RetailParams.defaults().task_split == "test"
    assert (
        RetailParams.defaults(source="taubench", taubench_dir="x", task_split="train").task_split
        == "train"
    )
    with pytest.raises(ParamsError):
        RetailParams.defaults(task_split="validation")


# -- gold replay -----------------------------------------------------------------------------------
def test_gold_replay_leaves_taubench_database_and_scores_one(checkout):
    """Each task's gold calls (reads, calculate, think, a failing write and a transfer included)
    leave the database tau-bench's tools leave, byte for byte in canonical JSON (an item change's
    difference unrounded); an agent that makes them and says the outputs scores 1, as in tau-bench,
    and one that leaves out an output scores 0."""
    for split in SPLITS:
        data = load_taubench(checkout, split)
        targets = {t.key: t.target_hash for t in data.tasks}
        for task in data.raw:
            want = expected_db(split, task.index)
            view = gold_view(data.db, task)
            assert db_json(view.to_db()) == db_json(want), (split, task.index)
            assert replay_gold(data.db, task) == 1.0, (split, task.index)
            if f"taubench:{split}:{task.index}" in targets:
                assert targets[f"taubench:{split}:{task.index}"] == view.hash()
            if task.outputs:
                assert episode_reward(data.db, task, task.actions, ["Done."]) == 0.0
    assert sum(len(tasks) for tasks in TASKS.values()) == 12


def test_an_episode_scores_zero_when_the_database_or_an_output_differs(checkout):
    data = load_taubench(checkout, "test")
    cancel = data.raw[3]  # cancel the gift-card order ("no longer needed")
    wrong = [
        (n, {**k, "reason": "ordered by mistake"}) if n == "cancel_pending_order" else (n, k)
        for n, k in cancel.actions
    ]
    assert episode_reward(data.db, cancel, cancel.actions, []) == 1.0  # no outputs to say
    assert episode_reward(data.db, cancel, wrong, []) == 0.0
    assert (
        episode_reward(data.db, cancel, [*cancel.actions, ("think", {"thought": "done"})], [])
        == 1.0
    )
    assert episode_reward(data.db, cancel, cancel.actions[:-1], []) == 0.0  # the cancel never made
    lamp = data.raw[6]  # reads, then a transfer: nothing after the transfer counts
    late_write = [
        *lamp.actions,
        ("cancel_pending_order", {"order_id": "#W7000006", "reason": "no longer needed"}),
    ]
    assert episode_reward(data.db, lamp, late_write, []) == 1.0
    ret = data.raw[0]  # outputs ["24.50"]: said in any message, case and commas ignored
    assert episode_reward(data.db, ret, ret.actions, ["You get $24.50 back."]) == 1.0
    assert episode_reward(data.db, ret, ret.actions, ["You get $24.5 back."]) == 0.0
    assert episode_reward(data.db, ret, ret.actions, []) == 0.0


# -- the environment on tau-bench's data -----------------------------------------------------------
def play_expert(env):
    done, info, reward = False, {}, 0.0
    while not done:
        action = env.expert_action()
        assert action in env.valid_actions(), (action, env.target_hint())
        _, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return info, reward


def test_the_environment_plays_every_loaded_task(checkout):
    for split in SPLITS:
        data = load_taubench(checkout, split)
        world = RetailWorld(data.db, data.tasks, data.n_skipped)
        for seed in range(len(data.tasks)):
            env = RetailEnv("all", max_steps=30, world=world)
            env.reset(seed)
            assert env.task is data.tasks[seed]
            info, reward = play_expert(env)
            assert info["success"] and reward == 1.0, (split, seed, env.task.key)


def test_a_write_after_the_users_details_on_taubench_users(checkout):
    """tau-bench's user records carry no user_id: fetching the user's details and then writing (the
    cancel refunds a gift card, so the user record changes too) reads none."""
    data = load_taubench(checkout, "test")
    world = RetailWorld(data.db, data.tasks)
    env = RetailEnv("cancel", world=world)
    env.reset(0)
    assert env.task.key == "taubench:test:3"
    cancel = env.task.actions[0]
    for action in [
        say(ASK_IDENTITY),
        format_call("find_user_id_by_email", {"email": "nina.park7301@example.com"}),
        format_call("get_user_details", {"user_id": "nina_park_7301"}),
        say(ASK_ORDER),
        format_call("get_order_details", {"order_id": "#W7000002"}),
        say(confirm_text(cancel)),
        cancel,
    ]:
        _, _, _, _, info = env.step(action)
        assert info["valid"], action
    assert env.user_record["payment_methods"]["gift_card_9910023"]["balance"] == 99.9
    _, reward, terminated, _, _ = env.step(TRANSFER)
    assert terminated and reward == 1.0


# -- the tools tau-bench has beyond the scripted user's five writes --------------------------------
def test_calculate(db):
    assert run(db, "calculate", expression="64.98 - 52.69") == "12.29"
    assert run(db, "calculate", expression="2 + 2") == "4.0"
    assert run(db, "calculate", expression=" (1 + 2) * 3 / 4") == "2.25"
    assert run(db, "calculate", expression="2 ** 10 // 3") == "341.0"
    assert run(db, "calculate", expression="-(0.1 + 0.2)") == "-0.3"
    assert run(db, "calculate", expression="1 / 0") == "Error: division by zero"
    assert run(db, "calculate", expression="2 + x") == "Error: invalid characters in expression"
    assert run(db, "calculate", expression="(2") == "Error: '(' was never closed (<string>, line 1)"
    assert run(db, "calculate", expression="2 3") == "Error: invalid syntax (<string>, line 1)"
    assert run(db, "calculate", expression="(2)(3)") == "Error: 'int' object is not callable"
    assert (
        run(db, "calculate", expression="9 ** 9 ** 9") == "Error: int too large to convert to float"
    )
    assert (
        run(db, "calculate", expression=["1", "2"])
        == "Error: eval() arg 1 must be a string, bytes or code object"
    )
    assert run(db, "calculate", expression=None) == "Error: 'NoneType' object is not iterable"
    assert db.overlay == {}


def test_think_and_list_all_product_types(db):
    assert run(db, "think", thought="The user wants a lamp.") == ""
    assert run(db, "list_all_product_types") == json.dumps(
        {
            "Desk Lamp": "5500004444",
            "Table Fan": "5500003333",
            "Travel Mug": "5500001111",
            "Wool Socks": "5500002222",
        }
    )
    assert db.overlay == {}


def test_modify_user_address(db):
    new = dict(
        address1="12 Harbor Street",
        address2="",
        city="Boston",
        state="MA",
        country="USA",
        zip="02110",
    )
    assert run(db, "modify_user_address", user_id="lena_voss", **new) == "Error: user not found"
    out = json.loads(run(db, "modify_user_address", user_id="lena_voss_8830", **new))
    assert out["address"] == new and "user_id" not in out
    assert db.get("users", "lena_voss_8830")["address"] == new
    assert [k for k, _ in db.overlay] == ["users"]


def test_modify_pending_order_payment(db):
    call = dict(order_id="#W7000004", payment_method_id="gift_card_3300120")
    assert (
        run(db, "modify_pending_order_payment", **{**call, "order_id": "#W1"})
        == "Error: order not found"
    )
    assert (
        run(db, "modify_pending_order_payment", **{**call, "order_id": "#W7000001"})
        == "Error: non-pending order cannot be modified"
    )
    assert (
        run(db, "modify_pending_order_payment", **{**call, "payment_method_id": "paypal_5520981"})
        == "Error: payment method not found"
    )
    assert (
        run(
            db,
            "modify_pending_order_payment",
            **{**call, "payment_method_id": "credit_card_6630090"},
        )
        == "Error: the new payment method should be different from the current one"
    )
    assert db.overlay == {}
    out = json.loads(run(db, "modify_pending_order_payment", **call))
    assert out["status"] == "pending" and out["payment_history"][1:] == [
        {"transaction_type": "payment", "amount": 24.5, "payment_method_id": "gift_card_3300120"},
        {"transaction_type": "refund", "amount": 24.5, "payment_method_id": "credit_card_6630090"},
    ]
    assert (
        db.get("users", "lena_voss_8830")["payment_methods"]["gift_card_3300120"]["balance"] == 55.5
    )
    assert (
        run(
            db,
            "modify_pending_order_payment",
            **{**call, "payment_method_id": "credit_card_6630090"},
        )
        == "Error: there should be exactly one payment for a pending order"
    )


def test_modify_payment_gift_card_both_ways(db):
    """Paying with a gift card needs its balance; moving off a gift card refunds it at once."""
    # 52.69 <= 80.0
    assert run(
        db,
        "modify_pending_order_payment",
        order_id="#W7000005",
        payment_method_id="gift_card_3300120",
    ) == json.dumps(json.loads(run(db, "get_order_details", order_id="#W7000005")))
    assert (
        db.get("users", "lena_voss_8830")["payment_methods"]["gift_card_3300120"]["balance"]
        == 27.31
    )
    nina = DBView(db.base)
    assert run(
        nina,
        "modify_pending_order_payment",
        order_id="#W7000002",
        payment_method_id="credit_card_4402117",
    ).startswith("{")
    assert (
        nina.get("users", "nina_park_7301")["payment_methods"]["gift_card_9910023"]["balance"]
        == 99.9
    )
    lena = DBView(db.base)
    lena.put(
        "users",
        "lena_voss_8830",
        {
            **db.base["users"]["lena_voss_8830"],
            "payment_methods": {
                **db.base["users"]["lena_voss_8830"]["payment_methods"],
                "gift_card_3300120": {
                    "source": "gift_card",
                    "balance": 20.0,
                    "id": "gift_card_3300120",
                },
            },
        },
    )
    assert (
        run(
            lena,
            "modify_pending_order_payment",
            order_id="#W7000004",
            payment_method_id="gift_card_3300120",
        )
        == "Error: insufficient gift card balance to pay for the order"
    )


def test_item_change_difference_is_not_rounded(db):
    """tau-bench keeps an item change's price difference as summed (64.98 - 52.69
    = 12.290000000000006) and rounds only the gift card's balance; an exchange's difference is
    rounded."""
    out = json.loads(
        run(
            db,
            "modify_pending_order_items",
            order_id="#W7000005",
            item_ids=["7400000001"],
            new_item_ids=["7400000002"],
            payment_method_id="gift_card_3300120",
        )
    )
    assert out["payment_history"][-1]["amount"] == 64.98 - 52.69 != 12.29
    assert (
        db.get("users", "lena_voss_8830")["payment_methods"]["gift_card_3300120"]["balance"]
        == 67.71
    )
    view = DBView(db.base)
    out = json.loads(
        run(
            view,
            "modify_pending_order_items",
            order_id="#W7000006",
            item_ids=["7400000001"],
            new_item_ids=["7400000001"],
            payment_method_id="credit_card_4402117",
        )
    )
    assert out["payment_history"][-1] == {
        "transaction_type": "refund",
        "amount": 0.0,
        "payment_method_id": "credit_card_4402117",
    }
    view = DBView(db.base)
    out = json.loads(
        run(
            view,
            "modify_pending_order_items",
            order_id="#W7000006",
            item_ids=[],
            new_item_ids=[],
            payment_method_id="credit_card_4402117",
        )
    )
    # no items: tau-bench's integer 0
    assert json.dumps(out["payment_history"][-1]["amount"]) == "0"
