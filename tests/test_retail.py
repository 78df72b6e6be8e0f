"""The tau-bench-retail-style domain: tools on hand-made databases, reward, expert, restore, fork,
determinism, database generation and the tau-bench loader (on an invented fixture in tau-bench's
format)."""

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from teachable.envs import (
    RestoreError,
    TextEnv,
    known_levels,
    make_env,
    restore_env,
    tokenizer_words,
)
from teachable.envs.retail import POLICY, RetailEnv, RetailWorld, configure_retail
from teachable.envs.retail.database import DBView, db_json, generate_db, load_db, save_db
from teachable.envs.retail.env import TRANSFER
from teachable.envs.retail.taubench import load_taubench, parse_tasks_file
from teachable.envs.retail.tasks import FAMILIES, LEVELS, make_task
from teachable.envs.retail.tools import TOOLS, call_tool
from teachable.envs.retail.user import (
    ASK_IDENTITY,
    ASK_MORE,
    ASK_ORDER,
    REFUSE,
    confirm_text,
    tell_text,
)
from teachable.envs.toolcall import format_call, parse_call
from tests.taubench_fixture import write_checkout


def say(content: str) -> str:
    return format_call("respond", {"content": content})


# -- a hand-made database --------------------------------------------------------------------------
def tiny_db() -> dict:
    address = {
        "address1": "1 Elm Street",
        "address2": "Suite 100",
        "city": "Austin",
        "country": "USA",
        "state": "TX",
        "zip": "78701",
    }
    lamp = {
        "1000000001": {
            "item_id": "1000000001",
            "options": {"color": "black"},
            "available": True,
            "price": 100.0,
        },
        "1000000002": {
            "item_id": "1000000002",
            "options": {"color": "white"},
            "available": True,
            "price": 130.0,
        },
        "1000000003": {
            "item_id": "1000000003",
            "options": {"color": "red"},
            "available": False,
            "price": 90.0,
        },
    }
    mug = {
        "2000000001": {
            "item_id": "2000000001",
            "options": {"size": "S"},
            "available": True,
            "price": 10.0,
        },
        "2000000002": {
            "item_id": "2000000002",
            "options": {"size": "L"},
            "available": True,
            "price": 12.5,
        },
    }

    def item(name, product_id, variants, item_id):
        v = variants[item_id]
        return {
            "name": name,
            "product_id": product_id,
            "item_id": item_id,
            "price": v["price"],
            "options": dict(v["options"]),
        }

    def order(order_id, status, items, pm):
        total = round(sum(i["price"] for i in items), 2)
        return {
            "order_id": order_id,
            "user_id": "ann_lee_1234",
            "address": dict(address),
            "items": items,
            "fulfillments": [],
            "status": status,
            "payment_history": [
                {"transaction_type": "payment", "amount": total, "payment_method_id": pm}
            ],
        }

    return {
        "products": {
            "9000000001": {"name": "Desk Lamp", "product_id": "9000000001", "variants": lamp},
            "9000000002": {"name": "Mug", "product_id": "9000000002", "variants": mug},
        },
        "users": {
            "ann_lee_1234": {
                "user_id": "ann_lee_1234",
                "name": {"first_name": "Ann", "last_name": "Lee"},
                "address": address,
                "email": "ann.lee1234@example.com",
                "payment_methods": {
                    "credit_card_1111111": {
                        "source": "credit_card",
                        "brand": "visa",
                        "last_four": "1111",
                        "id": "credit_card_1111111",
                    },
                    "gift_card_2222222": {
                        "source": "gift_card",
                        "balance": 20.0,
                        "id": "gift_card_2222222",
                    },
                    "paypal_3333333": {"source": "paypal", "id": "paypal_3333333"},
                },
                "orders": ["#W0000001", "#W0000002", "#W0000003"],
            }
        },
        "orders": {
            "#W0000001": order(
                "#W0000001",
                "pending",
                [
                    item("Desk Lamp", "9000000001", lamp, "1000000001"),
                    item("Mug", "9000000002", mug, "2000000001"),
                ],
                "gift_card_2222222",
            ),
            "#W0000002": order(
                "#W0000002",
                "delivered",
                [
                    item("Desk Lamp", "9000000001", lamp, "1000000001"),
                    item("Mug", "9000000002", mug, "2000000001"),
                ],
                "credit_card_1111111",
            ),
            "#W0000003": order(
                "#W0000003",
                "processed",
                [item("Mug", "9000000002", mug, "2000000002")],
                "paypal_3333333",
            ),
        },
    }


@pytest.fixture
def db():
    base = tiny_db()
    snapshot = copy.deepcopy(base)
    yield DBView(base)
    assert base == snapshot, "a tool mutated the shared base database"


def run(db, name, **args):
    return call_tool(db, name, args)


# -- reads -----------------------------------------------------------------------------------------
def test_find_user_by_email_and_name_zip(db):
    assert run(db, "find_user_id_by_email", email="Ann.Lee1234@example.com") == "ann_lee_1234"
    assert run(db, "find_user_id_by_email", email="nobody@example.com") == "Error: user not found"
    assert (
        run(db, "find_user_id_by_name_zip", first_name="ann", last_name="LEE", zip="78701")
        == "ann_lee_1234"
    )
    assert run(
        db, "find_user_id_by_name_zip", first_name="Ann", last_name="Lee", zip="78702"
    ).startswith("Error")


def test_get_details(db):
    assert (
        json.loads(run(db, "get_user_details", user_id="ann_lee_1234"))["email"]
        == "ann.lee1234@example.com"
    )
    assert run(db, "get_user_details", user_id="bob") == "Error: user not found"
    assert json.loads(run(db, "get_order_details", order_id="#W0000002"))["status"] == "delivered"
    assert run(db, "get_order_details", order_id="W0000002") == "Error: order not found"
    assert set(json.loads(run(db, "get_product_details", product_id="9000000001"))["variants"]) == {
        "1000000001",
        "1000000002",
        "1000000003",
    }
    assert run(db, "get_product_details", product_id="1000000001") == "Error: product not found"


def test_transfer_and_bad_arguments(db):
    """A wrong call reads as tau-bench's environment reports it: Python's message for its tool
    class, or the exception a wrong argument type raises; an unknown tool is an "Unknown action"."""
    assert run(db, "transfer_to_human_agents", summary="help") == "Transfer successful"
    assert (
        run(db, "cancel_pending_order", order_id="#W0000001")
        == "Error: CancelPendingOrder.invoke() missing 1 required positional argument: 'reason'"
    )
    assert run(db, "modify_pending_order_items", order_id="#W0000001") == (
        "Error: ModifyPendingOrderItems.invoke() missing 3 required positional arguments: "
        "'item_ids', 'new_item_ids', and 'payment_method_id'"
    )
    assert (
        run(db, "find_user_id_by_name_zip", first_name="Ann")
        == "Error: FindUserIdByNameZip.invoke() missing 2 required positional arguments: "
        "'last_name' and 'zip'"
    )
    assert (
        run(db, "cancel_pending_order", order_id="#W0000001", reason="no longer needed", x=1)
        == "Error: CancelPendingOrder.invoke() got an unexpected keyword argument 'x'"
    )
    assert (
        run(db, "find_user_id_by_email", email=5) == "Error: 'int' object has no attribute 'lower'"
    )
    assert run(db, "get_order_details", order_id=["#W0000001"]) == "Error: unhashable type: 'list'"
    assert (
        run(
            db,
            "return_delivered_order_items",
            order_id="#W0000002",
            item_ids=None,
            payment_method_id="credit_card_1111111",
        )
        == "Error: 'NoneType' object is not iterable"
    )
    assert run(db, "no_such_tool") == "Unknown action no_such_tool"
    assert db.overlay == {}


# -- writes ----------------------------------------------------------------------------------------
def test_cancel_pending_order(db):
    assert (
        run(db, "cancel_pending_order", order_id="#W9", reason="no longer needed")
        == "Error: order not found"
    )
    assert (
        run(db, "cancel_pending_order", order_id="#W0000002", reason="no longer needed")
        == "Error: non-pending order cannot be cancelled"
    )
    assert (
        run(db, "cancel_pending_order", order_id="#W0000001", reason="too expensive")
        == "Error: invalid reason"
    )
    assert db.overlay == {}
    out = json.loads(
        run(db, "cancel_pending_order", order_id="#W0000001", reason="ordered by mistake")
    )
    assert out["status"] == "cancelled" and out["cancel_reason"] == "ordered by mistake"
    assert out["payment_history"][-1] == {
        "transaction_type": "refund",
        "amount": 110.0,
        "payment_method_id": "gift_card_2222222",
    }
    # a gift card is refunded at once
    assert (
        db.get("users", "ann_lee_1234")["payment_methods"]["gift_card_2222222"]["balance"] == 130.0
    )
    assert db.get("orders", "#W0000001")["status"] == "cancelled"
    assert run(
        db, "cancel_pending_order", order_id="#W0000001", reason="no longer needed"
    ).startswith("Error")


def test_modify_pending_order_items(db):
    call = dict(
        order_id="#W0000001",
        item_ids=["1000000001"],
        new_item_ids=["1000000002"],
        payment_method_id="credit_card_1111111",
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "order_id": "#W9"})
        == "Error: order not found"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "order_id": "#W0000002"})
        == "Error: non-pending order cannot be modified"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "item_ids": ["1000000002"]})
        == "Error: 1000000002 not found"
    )
    assert (
        run(
            db,
            "modify_pending_order_items",
            **{
                **call,
                "item_ids": ["1000000001", "1000000001"],
                "new_item_ids": ["1000000002", "1000000002"],
            },
        )
        == "Error: 1000000001 not found"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "new_item_ids": []})
        == "Error: the number of items to be exchanged should match"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "new_item_ids": ["1000000003"]})
        == "Error: new item 1000000003 not found or available"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "new_item_ids": ["2000000002"]})
        == "Error: new item 2000000002 not found or available"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "payment_method_id": "paypal_9"})
        == "Error: payment method not found"
    )
    assert (
        run(db, "modify_pending_order_items", **{**call, "payment_method_id": "gift_card_2222222"})
        == "Error: insufficient gift card balance to pay for the new item"
    )
    assert db.overlay == {}
    out = json.loads(run(db, "modify_pending_order_items", **call))
    assert out["status"] == "pending (item modified)"
    assert out["items"][0] == {
        "name": "Desk Lamp",
        "product_id": "9000000001",
        "item_id": "1000000002",
        "price": 130.0,
        "options": {"color": "white"},
    }
    assert out["payment_history"][-1] == {
        "transaction_type": "payment",
        "amount": 30.0,
        "payment_method_id": "credit_card_1111111",
    }
    assert (
        run(db, "modify_pending_order_items", **call)
        == "Error: non-pending order cannot be modified"
    )


def test_modify_items_gift_card_balance(db):
    out = json.loads(
        run(
            db,
            "modify_pending_order_items",
            order_id="#W0000001",
            item_ids=["2000000001"],
            new_item_ids=["2000000002"],
            payment_method_id="gift_card_2222222",
        )
    )
    assert out["payment_history"][-1]["amount"] == 2.5
    assert (
        db.get("users", "ann_lee_1234")["payment_methods"]["gift_card_2222222"]["balance"] == 17.5
    )


def test_modify_pending_order_address(db):
    new = dict(
        address1="5 Oak Avenue", address2="", city="Denver", state="CO", country="USA", zip="80202"
    )
    assert (
        run(db, "modify_pending_order_address", order_id="#W9", **new) == "Error: order not found"
    )
    assert (
        run(db, "modify_pending_order_address", order_id="#W0000003", **new)
        == "Error: non-pending order cannot be modified"
    )
    out = json.loads(run(db, "modify_pending_order_address", order_id="#W0000001", **new))
    assert out["address"] == new and out["status"] == "pending"


def test_return_delivered_order_items(db):
    call = dict(
        order_id="#W0000002", item_ids=["2000000001"], payment_method_id="credit_card_1111111"
    )
    assert (
        run(db, "return_delivered_order_items", **{**call, "order_id": "#W9"})
        == "Error: order not found"
    )
    assert (
        run(db, "return_delivered_order_items", **{**call, "order_id": "#W0000001"})
        == "Error: non-delivered order cannot be returned"
    )
    assert (
        run(db, "return_delivered_order_items", **{**call, "payment_method_id": "credit_card_9"})
        == "Error: payment method not found"
    )
    assert (
        run(db, "return_delivered_order_items", **{**call, "payment_method_id": "paypal_3333333"})
        == "Error: payment method should be either the original payment method or a gift card"
    )
    assert (
        run(db, "return_delivered_order_items", **{**call, "item_ids": ["2000000002"]})
        == "Error: some item not found"
    )
    assert db.overlay == {}
    out = json.loads(
        run(
            db, "return_delivered_order_items", **{**call, "payment_method_id": "gift_card_2222222"}
        )
    )
    assert out["status"] == "return requested" and out["return_items"] == ["2000000001"]
    assert out["return_payment_method_id"] == "gift_card_2222222"


def test_exchange_delivered_order_items(db):
    call = dict(
        order_id="#W0000002",
        item_ids=["1000000001"],
        new_item_ids=["1000000002"],
        payment_method_id="credit_card_1111111",
    )
    assert (
        run(db, "exchange_delivered_order_items", **{**call, "order_id": "#W9"})
        == "Error: order not found"
    )
    assert (
        run(db, "exchange_delivered_order_items", **{**call, "order_id": "#W0000001"})
        == "Error: non-delivered order cannot be exchanged"
    )
    assert (
        run(db, "exchange_delivered_order_items", **{**call, "item_ids": ["1000000003"]})
        == "Error: 1000000003 not found"
    )
    assert (
        run(
            db,
            "exchange_delivered_order_items",
            **{**call, "new_item_ids": ["1000000002", "2000000002"]},
        )
        == "Error: the number of items to be exchanged should match"
    )
    assert (
        run(db, "exchange_delivered_order_items", **{**call, "new_item_ids": ["1000000003"]})
        == "Error: new item 1000000003 not found or available"
    )
    assert (
        run(db, "exchange_delivered_order_items", **{**call, "payment_method_id": "x"})
        == "Error: payment method not found"
    )
    assert (
        run(
            db,
            "exchange_delivered_order_items",
            **{**call, "payment_method_id": "gift_card_2222222"},
        )
        == "Error: insufficient gift card balance to pay for the price difference"
    )
    assert db.overlay == {}
    out = json.loads(run(db, "exchange_delivered_order_items", **call))
    assert out["status"] == "exchange requested" and out["exchange_new_items"] == ["1000000002"]
    assert out["exchange_price_difference"] == 30.0 and out["items"][0]["item_id"] == "1000000001"
    assert run(db, "exchange_delivered_order_items", **call).startswith("Error: non-delivered")


def test_tools_registry_matches_signatures():
    import inspect

    for name, tool in TOOLS.items():
        assert tuple(inspect.signature(tool.function).parameters)[1:] == tool.params, name
    assert sorted(TOOLS) == [  # tau-bench retail's 16 tools
        "calculate",
        "cancel_pending_order",
        "exchange_delivered_order_items",
        "find_user_id_by_email",
        "find_user_id_by_name_zip",
        "get_order_details",
        "get_product_details",
        "get_user_details",
        "list_all_product_types",
        "modify_pending_order_address",
        "modify_pending_order_items",
        "modify_pending_order_payment",
        "modify_user_address",
        "return_delivered_order_items",
        "think",
        "transfer_to_human_agents",
    ]
    assert {n for n, t in TOOLS.items() if t.is_write} == {
        "cancel_pending_order",
        "modify_pending_order_items",
        "modify_pending_order_address",
        "return_delivered_order_items",
        "exchange_delivered_order_items",
        "modify_pending_order_payment",
        "modify_user_address",
    }


# -- database --------------------------------------------------------------------------------------
def test_view_hash_depends_on_final_state_only(db):
    fresh = db.hash()
    new = dict(
        address1="5 Oak Avenue", address2="", city="Denver", state="CO", country="USA", zip="80202"
    )
    old = {k: db.get("orders", "#W0000001")["address"][k] for k in new}
    direct, detour = db.copy(), db.copy()
    run(direct, "modify_pending_order_address", order_id="#W0000001", **new)
    run(detour, "modify_pending_order_address", order_id="#W0000001", **{**new, "city": "Boston"})
    run(detour, "modify_pending_order_address", order_id="#W0000001", **new)
    assert direct.hash() == detour.hash() != fresh
    # back to the base record
    run(detour, "modify_pending_order_address", order_id="#W0000001", **old)
    assert detour.hash() == fresh and db.overlay == {}


def test_db_generation_is_deterministic(tmp_path):
    a, b = generate_db(3, 20, 3, 12), generate_db(3, 20, 3, 12)
    assert db_json(a) == db_json(b) and db_json(a) != db_json(generate_db(4, 20, 3, 12))
    assert len(a["users"]) == 20 and len(a["products"]) == 12
    assert all(2 <= len(u["orders"]) <= 3 for u in a["users"].values())
    order_id = next(iter(a["orders"]))
    assert order_id.startswith("#W") and len(order_id) == 9
    product_id, product = next(iter(a["products"].items()))
    assert (
        product_id.isdigit()
        and len(product_id) == 10
        and all(len(i) == 10 for i in product["variants"])
    )
    save_db(a, tmp_path)
    assert db_json(load_db(tmp_path)) == db_json(a)
    assert len({p["name"] for p in generate_db(0, 2, 1, 60)["products"].values()}) == 60


def test_generation_and_tasks_deterministic_across_processes():
    code = (
        "from teachable.envs.retail.database import generate_db, db_json; import hashlib;"
        "from teachable.envs.retail.tasks import make_task; db = generate_db(1, 30, 3, 15);"
        "t = make_task(db, 'all', 7);"
        "print(hashlib.sha256(db_json(db).encode()).hexdigest(), t.target_hash, t.request)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
        cwd=Path(__file__).parent.parent,
    ).stdout
    import hashlib

    db = generate_db(1, 30, 3, 15)
    task = make_task(db, "all", 7)
    assert (
        out.strip()
        == f"{hashlib.sha256(db_json(db).encode()).hexdigest()} {task.target_hash} {task.request}"
    )


# -- tasks -----------------------------------------------------------------------------------------
def test_make_task_families():
    db = RetailEnv.shared_world().db
    for family in FAMILIES:
        for seed in range(5):
            task = make_task(db, family, seed)
            assert task == make_task(db, family, seed) and task.family == family
            assert len(task.goals) == (2 if family == "two_writes" else 1)
            assert len({g.order_id for g in task.goals}) == len(task.goals)
            orders = [db["orders"][g.order_id] for g in task.goals]
            assert all(o["user_id"] == task.user_id for o in orders)
            for goal, order in zip(task.goals, orders):
                name, args = parse_call(goal.action)
                assert list(args) == list(TOOLS[name].params)
                assert order["status"] == (
                    "delivered" if goal.kind in ("return", "exchange") else "pending"
                )
                if "payment_method_id" in args:
                    assert (
                        args["payment_method_id"]
                        == order["payment_history"][0]["payment_method_id"]
                    )
                    assert len(args["item_ids"]) == 1
                if goal.kind == "return":
                    price = next(
                        i["price"] for i in order["items"] if i["item_id"] == args["item_ids"][0]
                    )
                    assert goal.outputs == (f"{price:.2f}",)
            assert "#W" not in task.request and task.user_id not in task.request
    assert {make_task(db, "all", s).family for s in range(40)} == set(FAMILIES)
    # wording varies
    assert len({make_task(db, "return", s).request.split(" ")[0] for s in range(20)}) > 1


# -- environment -----------------------------------------------------------------------------------
def play_expert(env):
    done, info = False, {}
    while not done:
        action = env.expert_action()
        valid = env.valid_actions()
        assert action in valid, (action, env.target_hint())
        assert len(valid) == len(set(valid))
        _, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return info, reward


def test_protocol_and_registry():
    env = make_env("retail", "cancel")
    assert isinstance(env, TextEnv) and env.env_name == "retail"
    assert set(known_levels("retail")) == set(LEVELS)
    obs, info = env.reset(0)
    assert obs.startswith("User: ") and info["mission"] == env.mission
    assert "Known: nothing yet." in obs
    assert env.target_hint() == "The user has not been identified yet."
    assert "policy" in POLICY and "explicit yes" in POLICY and len(POLICY.split()) <= 70
    words = tokenizer_words("retail")
    db = RetailEnv.shared_world().db
    some_user = next(iter(db["users"].values()))
    assert {
        some_user["user_id"],
        some_user["email"],
        some_user["address"]["zip"],
        *some_user["payment_methods"],
        *some_user["orders"],
    } <= set(words)
    assert set(db["products"]) <= set(words) and len(words) == len(set(words))
    # tool names and tool-call JSON pieces whole; catalogue words after their space; nothing short
    # that splits words
    assert {"exchange_delivered_order_items", "payment_method_id", "tool_calls", '\\"'} <= set(
        words
    )
    some_product = next(iter(db["products"].values()))
    assert " " + some_product["name"] in words and " red" not in words and " yes" not in words
    with pytest.raises(ValueError):
        RetailEnv("nope")


def test_messages_are_terse_and_name_the_exact_write():
    exchange = format_call(
        "exchange_delivered_order_items",
        {
            "order_id": "#W1",
            "item_ids": ["111"],
            "new_item_ids": ["222"],
            "payment_method_id": "pp_1",
        },
    )
    assert confirm_text(exchange) == "Confirm: exchange 111 -> 222 in #W1, difference via pp_1?"
    ret = format_call(
        "return_delivered_order_items",
        {"order_id": "#W1", "item_ids": ["111", "333"], "payment_method_id": "gift_card_2"},
    )
    assert confirm_text(ret) == "Confirm: return 111, 333 from #W1, refund to gift_card_2?"
    cancel = format_call(
        "cancel_pending_order", {"order_id": "#W1", "reason": "ordered by mistake"}
    )
    assert confirm_text(cancel) == "Confirm: cancel #W1 (ordered by mistake)?"
    assert tell_text(12.5) == "Refund: $12.50."
    assert all(len(m) <= 40 for m in (ASK_IDENTITY, ASK_ORDER, ASK_MORE, REFUSE))


def test_tells_are_offered_after_a_return_only():
    env = RetailEnv("return")
    env.reset(seed_of("return"))
    tell = say(tell_text(float(env.task.outputs[0])))
    while not env.done:
        assert not any("Refund:" in a for a in env.valid_actions())
        env.step(env.expert_action())
    assert env.expert_action() == tell and tell in env.valid_actions()
    # the write's result names the amount to tell, as a cancellation's names its refund
    assert f"refund ${env.task.outputs[0]} to " in env.observation
    assert play_expert(env)[0]["success"]


def test_first_observation_does_not_repeat_the_mission():
    env = RetailEnv("two_writes")
    obs, info = env.reset(0)
    assert info["mission"] not in obs and env.mission not in obs


N_SEEDS = 10  # x 7 levels = 70 tasks


@pytest.mark.heavy
def test_expert_succeeds_from_reset():
    results, lengths = [], []
    for level in LEVELS:
        for seed in range(N_SEEDS):
            env = RetailEnv(level)
            env.reset(seed)
            info, reward = play_expert(env)
            results.append(info["success"] and reward == 1.0)
            lengths.append(env.step_count)
    assert sum(results) / len(results) >= 0.95, sum(results)
    assert max(lengths) <= 17


@pytest.mark.heavy
def test_expert_recovers_from_a_wrong_read():
    results = []
    for level in LEVELS:
        for seed in range(N_SEEDS):
            env = RetailEnv(level)
            env.reset(seed)
            rng = random.Random(seed)
            for _ in range(rng.randint(0, 6)):
                env.step(env.expert_action())
            reads = [
                a
                for a in env.valid_actions()
                if a.startswith(("get_", "find_")) and a != env.expert_action()
            ]
            if reads:
                env.step(rng.choice(reads))
            results.append(play_expert(env)[0]["success"])
    assert sum(results) / len(results) >= 0.95, sum(results)


def seed_of(family, predicate=lambda task: True):
    db = RetailEnv.shared_world().db
    return next(s for s in range(200) if predicate(make_task(db, family, s)))


def test_reward_wrong_write_is_zero():
    env = RetailEnv("cancel")
    env.reset(seed_of("cancel"))
    goal = env.task.goals[0]
    name, args = parse_call(goal.action)
    other = {"no longer needed": "ordered by mistake", "ordered by mistake": "no longer needed"}[
        args["reason"]
    ]
    wrong = format_call(name, {**args, "reason": other})
    while say(confirm_text(wrong)) not in env.valid_actions():
        env.step(env.expert_action())
    assert wrong not in env.valid_actions()  # a write is offered once put to the user
    _, _, _, _, info = env.step(say(confirm_text(wrong)))
    assert (
        env.observation.startswith("User: No, that is not what I want.")
        and wrong in env.valid_actions()
    )
    _, _, _, _, info = env.step(wrong)  # the agent writes anyway
    assert info["valid"] and "cancelled" in env.observation
    assert "can no longer be reached" in env.target_hint()
    info, reward = play_expert(env)  # the expert carries on; the goal's cancel now fails
    assert reward == 0.0 and not info["success"]


def test_expert_stays_valid_when_a_wrong_write_removed_the_goal():
    env = RetailEnv("modify_address")
    env.reset(seed_of("modify_address"))
    while env.current != env.task.goals[0].order_id:
        env.step(env.expert_action())
    cancel = format_call(
        "cancel_pending_order", {"order_id": env.current, "reason": "no longer needed"}
    )
    env.step(say(confirm_text(cancel)))
    env.step(cancel)
    assert env.orders[env.current] == "cancelled"
    assert not any(a.startswith("modify_pending_order_address") for a in env.valid_actions())
    info, reward = play_expert(env)  # asserts the expert's action is valid at every step
    assert reward == 0.0 and env.step_count == env.max_steps


def test_reward_missing_required_output_is_zero():
    env = RetailEnv("return")
    env.reset(seed_of("return"))
    assert env.task.outputs
    told = False
    while True:
        action = env.expert_action()
        if action == say(tell_text(float(env.task.outputs[0]))):
            assert "has not been told the amount" in env.target_hint()
            told = True
            action = say(ASK_MORE)
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert told and terminated and reward == 0.0 and not info["success"]
    assert env.view.hash() == env.task.target_hash  # the database alone was right


def test_two_writes_in_the_other_order_succeed():
    env = RetailEnv("two_writes")
    env.reset(seed_of("two_writes", lambda t: t.goals[0].kind != t.goals[1].kind))
    first, second = env.task.goals
    env.step(say(ASK_IDENTITY))
    env.step(env.valid_actions()[0])  # the identity lookup
    assert env.user_id == env.task.user_id
    env.step(format_call("get_user_details", {"user_id": env.task.user_id}))
    env.step(format_call("get_order_details", {"order_id": second.order_id}))
    for product_id in env._goal_products(second):
        env.step(format_call("get_product_details", {"product_id": product_id}))
    env.step(say(confirm_text(second.action)))
    assert env.observation.startswith("User: Yes")
    assert "has confirmed" in env.target_hint()
    _, _, _, _, info = env.step(second.action)
    assert info["valid"] and env.done == [second.action]
    info, reward = play_expert(env)
    assert env.done == [second.action, first.action] and reward == 1.0 and info["success"]


def test_target_hint_and_refusals():
    env = RetailEnv("return")
    env.reset(seed_of("return"))
    while not env.confirmed:
        env.step(env.expert_action())
    assert env.target_hint() == "The user has confirmed the return; it has not been made yet."
    cancel = format_call(
        "cancel_pending_order", {"order_id": env.current, "reason": "no longer needed"}
    )
    # a delivered order: no cancel offered
    assert say(confirm_text(cancel)) not in env.valid_actions()
    twin = env.fork()
    _, reward, terminated, _, info = twin.step(say(REFUSE))
    assert terminated and reward == 0.0 and twin.valid_actions() == []
    _, reward, terminated, _, info = env.step(TRANSFER)
    assert (
        terminated
        and reward == 0.0
        and env.observation.startswith("transfer_to_human_agents: Transfer successful")
    )


def test_a_listed_write_the_policy_forbids_fails():
    env = RetailEnv("modify_items")
    env.reset(seed_of("modify_items"))
    while not env.done:
        env.step(env.expert_action())
    # items change once; no cancel either
    assert env.orders[env.current] == "pending (item modified)"
    cancel = format_call(
        "cancel_pending_order", {"order_id": env.current, "reason": "no longer needed"}
    )
    assert cancel not in env.valid_actions()  # a write is offered once put to the user
    env.step(say(confirm_text(cancel)))
    assert env.observation.startswith("User: No") and cancel in env.valid_actions()
    before = env.view.hash()
    _, _, terminated, _, info = env.step(cancel)  # the agent goes on anyway: the tool says no
    assert info["valid"] and not terminated and env.view.hash() == before
    assert "Error: non-pending order cannot be cancelled" in env.observation
    assert play_expert(env)[0]["success"]


def test_invalid_actions_change_nothing_and_argument_order_does_not_matter():
    env = RetailEnv("exchange")
    env.reset(1)
    before = env.state_hash()
    for action in [
        'find_user_id_by_email(email="x@example.com")',
        "hello",
        say("..."),
        say(" "),
        format_call("respond", {"content": "hi", "extra": 1}),
        format_call("get_order_details", {"order_id": "#W0000000"}),
    ]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert not info["valid"] and obs.startswith("Invalid action") and env.state_hash() == before
    env.step(say(ASK_IDENTITY))
    env.step(env.expert_action())
    env.step(say(ASK_ORDER))
    env.step(env.expert_action())
    env.step(env.expert_action())
    env.step(env.expert_action())  # the confirmation
    name, args = parse_call(env.expert_action())
    reordered = format_call(name, dict(reversed(list(args.items()))))
    assert reordered != env.expert_action()
    _, _, _, _, info = env.step(reordered)
    assert info["valid"] and env.done == [env.task.actions[0]]
    env.step(say(ASK_MORE))
    env.step(say(ASK_MORE))  # after the end nothing is valid
    assert env.ended and env.valid_actions() == []


def test_truncation_scores_the_final_state():
    env = RetailEnv("cancel", max_steps=3)
    env.reset(0)
    env.step(say(ASK_IDENTITY))
    env.step(say(ASK_ORDER))
    _, reward, terminated, truncated, info = env.step(say(ASK_ORDER))
    assert truncated and not terminated and reward == 0.0 and not info["success"]


def _write_made(level: str, seed: int, max_steps: int = 20) -> RetailEnv:
    """An episode the expert has played up to and including its task's write (the database is the
    target)."""
    env = RetailEnv(level, max_steps=max_steps)
    env.reset(seed)
    while not env.done:
        env.step(env.expert_action())
    assert env.view.hash() == env.task.target_hash and not env.ended
    return env


def test_reward_only_when_the_user_ends_or_the_agent_transfers():
    """As tau-bench: an episode the step limit truncates scores 0 even when its database is the
    target; one the user ends (goodbye) or the agent ends (a transfer to a human) is scored."""
    steps = _write_made("cancel", 0).step_count
    env = _write_made("cancel", 0, max_steps=steps + 1)
    _, reward, terminated, truncated, info = env.step(say(ASK_ORDER))  # the user is still talking
    assert (
        truncated and not terminated and reward == 0.0 and env.reward == 0.0 and not info["success"]
    )

    env = _write_made("cancel", 0)
    _, reward, terminated, truncated, info = env.step(say(ASK_MORE))  # "that's all, bye"
    assert terminated and not truncated and reward == 1.0 and info["success"]

    env = _write_made("cancel", 0, max_steps=steps + 1)
    # the agent ends it, at the last step too
    _, reward, terminated, truncated, info = env.step(TRANSFER)
    assert terminated and not truncated and reward == 1.0 and info["success"]
    _, reward, *_ = env.step(TRANSFER)  # nothing after the end
    assert reward == 0.0 and env.reward == 1.0


def mixed_play(env, rng, n):
    for _ in range(n):
        if env.ended:
            break
        env.step(env.expert_action() if rng.random() < 0.6 else env.random_action(rng))


def test_restore_by_replay():
    for seed in range(6):
        env = RetailEnv("all")
        env.reset(seed)
        mixed_play(env, random.Random(seed), 12)
        state, digest = env.state(), env.state_hash()
        twin = restore_env("retail", json.loads(json.dumps(state)), digest)
        assert twin.state_hash() == digest and twin.observation == env.observation
        assert twin.valid_actions() == env.valid_actions()
        with pytest.raises(RestoreError):
            RetailEnv.restore(state, "0" * 32)


def test_fork_isolation():
    env = RetailEnv("modify_items")
    env.reset(2)
    while env.expert_action() not in env.task.actions:
        env.step(env.expert_action())
    before, valid, overlay = env.state_hash(), env.valid_actions(), dict(env.view.overlay)
    twin = env.fork()
    twin.step(twin.expert_action())  # the write, in the fork only
    assert twin.done and twin.view.overlay and twin.state_hash() != before
    assert (
        env.state_hash() == before and env.valid_actions() == valid and env.view.overlay == overlay
    )
    assert env.done == [] and len(env.actions) + 1 == len(twin.actions)
    assert play_expert(env)[0]["success"] and play_expert(twin)[0]["success"]


def test_determinism():
    def trace(seed):
        env = RetailEnv("all")
        env.reset(seed)
        rng, out = random.Random(99), [env.mission, env.observation]
        while not env.ended and env.step_count < env.max_steps:
            action = env.expert_action() if rng.random() < 0.7 else env.random_action(rng)
            out += [action, env.step(action)[0], env.state_hash(), env.target_hint()]
        return out

    assert trace(5) == trace(5) and trace(5) != trace(6)


def test_expert_action_is_always_valid_under_random_play():
    for seed in range(40):
        env = RetailEnv("all")
        env.reset(seed)
        rng = random.Random(seed)
        while not env.ended and env.step_count < env.max_steps:
            valid = env.valid_actions()
            assert env.expert_action() in valid and len(valid) == len(set(valid))
            assert isinstance(env.target_hint(), str)
            writes = [
                a for a in valid if parse_call(a)[0] in TOOLS and TOOLS[parse_call(a)[0]].is_write
            ]
            roll = rng.random()
            action = (
                rng.choice(writes)
                if writes and roll < 0.2
                else env.expert_action()
                if roll < 0.7
                else env.random_action(rng)
            )
            env.step(action)


def test_observations_are_compact_and_valid_lists_small():
    lengths, counts, sizes = [], [], []
    for seed in range(20):
        env = RetailEnv("all")
        env.reset(seed)
        rng = random.Random(seed)
        while not env.ended and env.step_count < env.max_steps:
            lengths.append(len(env.observation))
            counts.append(len(env.valid_actions()))
            sizes.append(len("\n".join(env.valid_actions())))
            env.step(env.expert_action() if rng.random() < 0.7 else env.random_action(rng))
    assert sorted(lengths)[len(lengths) // 2] < 300 and max(lengths) < 800
    assert sorted(counts)[len(counts) // 2] <= 12 and max(counts) <= 30
    assert sorted(sizes)[len(sizes) // 2] < 600 and max(sizes) < 2000


# -- tau-bench's files (an invented checkout in tau-bench's layout: tests/taubench_fixture.py) -----
def test_taubench_loader_on_fixture(tmp_path):
    root = write_checkout(tmp_path)
    text = (root / "tasks_test.py").read_text()
    assert [t["user_id"] for t in parse_tasks_file(text)][:3] == [
        "nina_park_7301",
        "omar_reyes_2214",
        "lena_voss_8830",
    ]
    data = load_taubench(root)
    assert data.split == "test" and len(data.raw) == 7
    assert (
        data.skipped == {"the scripted user cannot ask for modify_user_address": 1}
        and data.n_skipped == 1
    )
    ret, exchange = data.tasks[:2]
    assert (ret.family, ret.identity, ret.outputs, ret.goals[0].outputs) == (
        "return",
        "email",
        ("24.50",),
        ("24.50",),
    )
    assert ret.actions == (
        'return_delivered_order_items(order_id="#W7000001", item_ids=["7100000001"], '
        'payment_method_id="credit_card_4402117")',
    )  # signature order
    assert (exchange.family, exchange.identity) == ("exchange", "name_zip")
    assert (
        "Wool Socks" in exchange.request
        and "color gray" in exchange.request
        and "#W" not in exchange.request
    )
    world = RetailWorld(data.db, data.tasks, data.n_skipped)
    for level, seed in [("return", 0), ("exchange", 0), ("all", 1)]:
        env = RetailEnv(level, world=world)
        env.reset(seed)
        assert play_expert(env)[0]["success"]


def test_configure_retail_switches_worlds(tmp_path):
    root = write_checkout(tmp_path)
    defaults = (
        RetailEnv.n_users,
        RetailEnv.orders_per_user,
        RetailEnv.n_products,
        RetailEnv.db_seed,
        RetailEnv.taubench_dir,
        RetailEnv.task_split,
    )
    try:
        configure_retail(taubench_dir=root)
        env = make_env("retail", "exchange")
        env.reset(0)
        assert env.task.user_id == "omar_reyes_2214" and "7300000002" in tokenizer_words("retail")
        configure_retail(task_split="dev")
        env = make_env("retail", "all")
        env.reset(0)
        assert env.task.key == "taubench:dev:0" and play_expert(env)[0]["success"]
        with pytest.raises(ValueError, match="split"):
            configure_retail(task_split="validation")
        configure_retail(n_users=10, orders_per_user=2, n_products=8, db_seed=5, taubench_dir="")
        env = make_env("retail", "all")
        env.reset(0)
        assert len(env.world.db["users"]) == 10 and play_expert(env)[0]["success"]
    finally:
        configure_retail(*defaults[:4], taubench_dir=defaults[4] or "", task_split=defaults[5])
    assert len(RetailEnv.shared_world().db["users"]) == defaults[0]
