"""tau-bench's retail tools on a checkout in tau-bench's layout (invented, written by tests/taubench_fixture.py in
tau-bench's file layout and field names: users keyed by id with no user_id field): every one of tau-bench's 16
tools has its outputs, error strings and database effects."""

import copy
import json

import pytest

from teachable.envs.retail.database import DBView, load_db
from teachable.envs.retail.tools import call_tool
from tests.taubench_fixture import TASKS, write_checkout


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


# -- the checkout ------------------------------------------------------------------------------------------------------
def test_the_fixture_is_in_taubench_layout(checkout):
    data = load_db(checkout / "data")
    assert all("user_id" not in user for user in data["users"].values())  # tau-bench's users: keyed by id only
    assert all(order["user_id"] in data["users"] for order in data["orders"].values())
    for split in TASKS:
        text = (checkout / f"tasks_{split}.py").read_text()
        assert text.startswith("from tau_bench.types import Task, Action") and f"TASKS_{split.upper()} = [" in text


# -- the tools tau-bench has beyond the scripted user's five writes ----------------------------------------------------
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
    assert run(db, "calculate", expression="9 ** 9 ** 9") == "Error: int too large to convert to float"
    assert db.overlay == {}


def test_think_and_list_all_product_types(db):
    assert run(db, "think", thought="The user wants a lamp.") == ""
    assert run(db, "list_all_product_types") == json.dumps(
        {"Desk Lamp": "5500004444", "Table Fan": "5500003333", "Travel Mug": "5500001111",
         "Wool Socks": "5500002222"})
    assert db.overlay == {}


def test_modify_user_address(db):
    new = dict(address1="12 Harbor Street", address2="", city="Boston", state="MA", country="USA", zip="02110")
    assert run(db, "modify_user_address", user_id="lena_voss", **new) == "Error: user not found"
    out = json.loads(run(db, "modify_user_address", user_id="lena_voss_8830", **new))
    assert out["address"] == new and "user_id" not in out
    assert db.get("users", "lena_voss_8830")["address"] == new
    assert [k for k, _ in db.overlay] == ["users"]


def test_modify_pending_order_payment(db):
    call = dict(order_id="#W7000004", payment_method_id="gift_card_3300120")
    assert run(db, "modify_pending_order_payment", **{**call, "order_id": "#W1"}) == "Error: order not found"
    assert run(db, "modify_pending_order_payment", **{**call, "order_id": "#W7000001"}) == \
        "Error: non-pending order cannot be modified"
    assert run(db, "modify_pending_order_payment", **{**call, "payment_method_id": "paypal_5520981"}) == \
        "Error: payment method not found"
    assert run(db, "modify_pending_order_payment", **{**call, "payment_method_id": "credit_card_6630090"}) == \
        "Error: the new payment method should be different from the current one"
    assert db.overlay == {}
    out = json.loads(run(db, "modify_pending_order_payment", **call))
    assert out["status"] == "pending" and out["payment_history"][1:] == [
        {"transaction_type": "payment", "amount": 24.5, "payment_method_id": "gift_card_3300120"},
        {"transaction_type": "refund", "amount": 24.5, "payment_method_id": "credit_card_6630090"}]
    assert db.get("users", "lena_voss_8830")["payment_methods"]["gift_card_3300120"]["balance"] == 55.5
    assert run(db, "modify_pending_order_payment", **{**call, "payment_method_id": "credit_card_6630090"}) == \
        "Error: there should be exactly one payment for a pending order"


def test_modify_payment_gift_card_both_ways(db):
    """Paying with a gift card needs its balance; moving off a gift card refunds it at once."""
    assert run(db, "modify_pending_order_payment", order_id="#W7000005", payment_method_id="gift_card_3300120") \
        == json.dumps(json.loads(run(db, "get_order_details", order_id="#W7000005")))  # 52.69 <= 80.0
    assert db.get("users", "lena_voss_8830")["payment_methods"]["gift_card_3300120"]["balance"] == 27.31
    nina = DBView(db.base)
    assert run(nina, "modify_pending_order_payment", order_id="#W7000002",
               payment_method_id="credit_card_4402117").startswith("{")
    assert nina.get("users", "nina_park_7301")["payment_methods"]["gift_card_9910023"]["balance"] == 99.9
    lena = DBView(db.base)
    lena.put("users", "lena_voss_8830", {**db.base["users"]["lena_voss_8830"], "payment_methods": {
        **db.base["users"]["lena_voss_8830"]["payment_methods"],
        "gift_card_3300120": {"source": "gift_card", "balance": 20.0, "id": "gift_card_3300120"}}})
    assert run(lena, "modify_pending_order_payment", order_id="#W7000004", payment_method_id="gift_card_3300120") \
        == "Error: insufficient gift card balance to pay for the order"


def test_item_change_difference_is_not_rounded(db):
    """tau-bench keeps an item change's price difference as summed (64.98 - 52.69 = 12.290000000000006) and rounds
    only the gift card's balance; an exchange's difference is rounded."""
    out = json.loads(run(db, "modify_pending_order_items", order_id="#W7000005", item_ids=["7400000001"],
                         new_item_ids=["7400000002"], payment_method_id="gift_card_3300120"))
    assert out["payment_history"][-1]["amount"] == 64.98 - 52.69 != 12.29
    assert db.get("users", "lena_voss_8830")["payment_methods"]["gift_card_3300120"]["balance"] == 67.71
    view = DBView(db.base)
    out = json.loads(run(view, "modify_pending_order_items", order_id="#W7000006", item_ids=["7400000001"],
                         new_item_ids=["7400000001"], payment_method_id="credit_card_4402117"))
    assert out["payment_history"][-1] == {"transaction_type": "refund", "amount": 0.0,
                                          "payment_method_id": "credit_card_4402117"}
    view = DBView(db.base)
    out = json.loads(run(view, "modify_pending_order_items", order_id="#W7000006", item_ids=[], new_item_ids=[],
                         payment_method_id="credit_card_4402117"))
    assert json.dumps(out["payment_history"][-1]["amount"]) == "0"  # no items: tau-bench's integer 0
