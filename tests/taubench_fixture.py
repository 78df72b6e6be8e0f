"""A small invented tau-bench retail checkout, written by the tests into a temporary folder in
tau-bench's own layout and field names: `data/users.json` (keyed by user id; the records carry no
`user_id`), `data/products.json`, `data/orders.json` (keyed by order id; each order names its
`user_id`) and `tasks_{test,train,dev}.py` with `Task(annotator=..., user_id=..., instruction=...,
actions=[Action(name=..., kwargs={...})], outputs=[...])` lists as tau-bench writes them. No
tau-bench file or record is copied: the people, products and tasks are made up.

`EXPECTED` holds, per (split, index), what tau-bench's tools do to the database for that task's gold
calls, worked out by hand from tau-bench's rules (the oracle the gold-replay test checks our tools
against)."""

from __future__ import annotations

import copy
import json
from pathlib import Path


def _address(address1, address2, city, state, zip_code):
    return {
        "address1": address1,
        "address2": address2,
        "city": city,
        "country": "USA",
        "state": state,
        "zip": zip_code,
    }


NINA_HOME = _address("41 Alder Court", "Apt 2", "Seattle", "WA", "98105")
OMAR_HOME = _address("900 Lakeshore Way", "", "Chicago", "IL", "60614")
LENA_HOME = _address("7 Quarry Lane", "Unit 5", "Boston", "MA", "02134")
LENA_NEW = _address("12 Harbor Street", "", "Boston", "MA", "02110")
NINA_NEW = _address("3 Birch Road", "Floor 2", "Portland", "OR", "97201")


def _variant(item_id, options, price, available=True):
    return {"item_id": item_id, "options": options, "available": available, "price": price}


PRODUCTS = {
    "5500001111": {
        "name": "Travel Mug",
        "product_id": "5500001111",
        "variants": {
            "7100000001": _variant("7100000001", {"capacity": "12oz", "color": "black"}, 24.5),
            "7100000002": _variant("7100000002", {"capacity": "16oz", "color": "black"}, 27.0),
            "7100000003": _variant("7100000003", {"capacity": "12oz", "color": "red"}, 24.5),
            "7100000004": _variant(
                "7100000004", {"capacity": "16oz", "color": "red"}, 27.0, available=False
            ),
        },
    },
    "5500002222": {
        "name": "Wool Socks",
        "product_id": "5500002222",
        "variants": {
            "7200000001": _variant("7200000001", {"size": "M", "color": "gray"}, 12.99),
            "7200000002": _variant("7200000002", {"size": "L", "color": "gray"}, 12.99),
            "7200000003": _variant("7200000003", {"size": "M", "color": "navy"}, 13.49),
        },
    },
    "5500003333": {
        "name": "Table Fan",
        "product_id": "5500003333",
        "variants": {
            "7300000001": _variant("7300000001", {"speeds": "3-speed", "color": "white"}, 39.9),
            "7300000002": _variant("7300000002", {"speeds": "5-speed", "color": "white"}, 49.9),
            "7300000003": _variant(
                "7300000003", {"speeds": "3-speed", "color": "black"}, 41.0, available=False
            ),
        },
    },
    # 64.98 - 52.69 is 12.290000000000006 in floating point: an item change keeps it, an exchange
    # rounds it
    "5500004444": {
        "name": "Desk Lamp",
        "product_id": "5500004444",
        "variants": {
            "7400000001": _variant("7400000001", {"light": "warm"}, 52.69),
            "7400000002": _variant("7400000002", {"light": "cool"}, 64.98),
            "7400000003": _variant("7400000003", {"light": "daylight"}, 58.0, available=False),
        },
    },
}


def _user(first, last, address, email, methods, orders):
    """A user record as tau-bench's users.json holds it: no user_id field (the id is the key)."""
    return {
        "name": {"first_name": first, "last_name": last},
        "address": address,
        "email": email,
        "payment_methods": {m["id"]: m for m in methods},
        "orders": orders,
    }


USERS = {
    "nina_park_7301": _user(
        "Nina",
        "Park",
        NINA_HOME,
        "nina.park7301@example.com",
        [
            {
                "source": "credit_card",
                "brand": "visa",
                "last_four": "4417",
                "id": "credit_card_4402117",
            },
            {"source": "gift_card", "balance": 60.0, "id": "gift_card_9910023"},
        ],
        ["#W7000001", "#W7000002", "#W7000006"],
    ),
    "omar_reyes_2214": _user(
        "Omar",
        "Reyes",
        OMAR_HOME,
        "omar.reyes2214@example.com",
        [{"source": "paypal", "id": "paypal_5520981"}],
        ["#W7000003"],
    ),
    "lena_voss_8830": _user(
        "Lena",
        "Voss",
        LENA_HOME,
        "lena.voss8830@example.com",
        [
            {
                "source": "credit_card",
                "brand": "mastercard",
                "last_four": "0090",
                "id": "credit_card_6630090",
            },
            {"source": "gift_card", "balance": 80.0, "id": "gift_card_3300120"},
        ],
        ["#W7000004", "#W7000005"],
    ),
}


def _item(product_id, item_id):
    product = PRODUCTS[product_id]
    variant = product["variants"][item_id]
    return {
        "name": product["name"],
        "product_id": product_id,
        "item_id": item_id,
        "price": variant["price"],
        "options": dict(variant["options"]),
    }


def _order(order_id, user_id, address, items, status, pm_id, tracking=None):
    total = round(sum(i["price"] for i in items), 2)
    fulfillments = (
        [{"tracking_id": [tracking], "item_ids": [i["item_id"] for i in items]}] if tracking else []
    )
    return {
        "order_id": order_id,
        "user_id": user_id,
        "address": dict(address),
        "items": items,
        "fulfillments": fulfillments,
        "status": status,
        "payment_history": [
            {"transaction_type": "payment", "amount": total, "payment_method_id": pm_id}
        ],
    }


ORDERS = {
    o["order_id"]: o
    for o in [
        _order(
            "#W7000001",
            "nina_park_7301",
            NINA_HOME,
            [_item("5500001111", "7100000001"), _item("5500002222", "7200000001")],
            "delivered",
            "credit_card_4402117",
            "118200450917",
        ),
        _order(
            "#W7000002",
            "nina_park_7301",
            NINA_HOME,
            [_item("5500003333", "7300000001")],
            "pending",
            "gift_card_9910023",
        ),
        _order(
            "#W7000003",
            "omar_reyes_2214",
            OMAR_HOME,
            [_item("5500002222", "7200000003"), _item("5500003333", "7300000001")],
            "delivered",
            "paypal_5520981",
            "550912387764",
        ),
        _order(
            "#W7000004",
            "lena_voss_8830",
            LENA_HOME,
            [_item("5500001111", "7100000003")],
            "pending",
            "credit_card_6630090",
        ),
        _order(
            "#W7000005",
            "lena_voss_8830",
            LENA_HOME,
            [_item("5500004444", "7400000001")],
            "pending",
            "credit_card_6630090",
        ),
        _order(
            "#W7000006",
            "nina_park_7301",
            NINA_HOME,
            [_item("5500004444", "7400000001"), _item("5500002222", "7200000002")],
            "pending",
            "credit_card_4402117",
        ),
    ]
}


def _lookup_name(first, last, zip_code):
    return ("find_user_id_by_name_zip", {"first_name": first, "last_name": last, "zip": zip_code})


LENA = _lookup_name("Lena", "Voss", "02134")
NINA_EMAIL = ("find_user_id_by_email", {"email": "nina.park7301@example.com"})

# split -> [(annotator, user_id, instruction, [(tool, kwargs)], outputs)]
TASKS = {
    "test": [
        (
            "0",
            "nina_park_7301",
            "You are Nina Park (nina.park7301@example.com). You want to return the travel mug you "
            "received and want to know how much you get back.",
            [
                NINA_EMAIL,
                ("get_order_details", {"order_id": "#W7000001"}),
                (
                    "return_delivered_order_items",
                    {
                        "payment_method_id": "credit_card_4402117",
                        "order_id": "#W7000001",
                        "item_ids": ["7100000001"],
                    },
                ),
            ],
            ["24.50"],
        ),
        (
            "0",
            "omar_reyes_2214",
            "You are Omar Reyes in 60614. You want to exchange your navy socks for gray ones of "
            "the same size and your fan for the 5-speed one, in one go.",
            [
                _lookup_name("Omar", "Reyes", "60614"),
                ("get_order_details", {"order_id": "#W7000003"}),
                ("get_product_details", {"product_id": "5500002222"}),
                ("get_product_details", {"product_id": "5500003333"}),
                (
                    "exchange_delivered_order_items",
                    {
                        "order_id": "#W7000003",
                        "item_ids": ["7200000003", "7300000001"],
                        "new_item_ids": ["7200000001", "7300000002"],
                        "payment_method_id": "paypal_5520981",
                    },
                ),
            ],
            [],
        ),
        (
            "0",
            "lena_voss_8830",
            "You are Lena Voss in 02134. You moved to 12 Harbor Street, Boston, MA 02110 and want "
            "your default address updated.",
            [
                LENA,
                (
                    "modify_user_address",
                    {
                        "user_id": "lena_voss_8830",
                        **{
                            k: LENA_NEW[k]
                            for k in ("address1", "address2", "city", "state", "country", "zip")
                        },
                    },
                ),
            ],
            [],
        ),
        (
            "0",
            "nina_park_7301",
            "You are Nina Park, nina.park7301@example.com. Cancel the fan you have not received "
            "yet; you no longer need it. It was paid with your gift card.",
            [
                NINA_EMAIL,
                ("get_user_details", {"user_id": "nina_park_7301"}),
                ("get_order_details", {"order_id": "#W7000002"}),
                ("cancel_pending_order", {"order_id": "#W7000002", "reason": "no longer needed"}),
            ],
            [],
        ),
        (
            "0",
            "lena_voss_8830",
            "You are Lena Voss in 02134. Change the warm desk lamp in your pending order to the "
            "cool one and pay the difference with your gift card.",
            [
                LENA,
                ("get_user_details", {"user_id": "lena_voss_8830"}),
                ("get_order_details", {"order_id": "#W7000005"}),
                ("get_product_details", {"product_id": "5500004444"}),
                ("calculate", {"expression": "64.98 - 52.69"}),
                ("think", {"thought": "The gift card covers 12.29."}),
                (
                    "modify_pending_order_items",
                    {
                        "order_id": "#W7000005",
                        "item_ids": ["7400000001"],
                        "new_item_ids": ["7400000002"],
                        "payment_method_id": "gift_card_3300120",
                    },
                ),
            ],
            [],
        ),
        (
            "0",
            "lena_voss_8830",
            "You are Lena Voss in 02134. You want to return the red travel mug; if that cannot "
            "be done, cancel the order since you ordered it by mistake.",
            [
                LENA,
                ("get_order_details", {"order_id": "#W7000004"}),
                # fails: still pending
                (
                    "return_delivered_order_items",
                    {
                        "order_id": "#W7000004",
                        "item_ids": ["7100000003"],
                        "payment_method_id": "credit_card_6630090",
                    },
                ),
                ("cancel_pending_order", {"order_id": "#W7000004", "reason": "ordered by mistake"}),
            ],
            [],
        ),
        (
            "0",
            "nina_park_7301",
            "You are Nina Park in 98105. Ask which desk lamps the shop sells, then ask for a "
            "human agent.",
            [
                _lookup_name("Nina", "Park", "98105"),
                ("list_all_product_types", {}),
                ("get_product_details", {"product_id": "5500004444"}),
                (
                    "transfer_to_human_agents",
                    {"summary": "The user wants to talk about desk lamps."},
                ),
            ],
            [],
        ),
    ],
    "train": [
        (
            "synthetic",
            "omar_reyes_2214",
            "Your name is Omar Reyes and your zip code is 60614. You are calm. Return "
            "#W7000003 via paypal_5520981: Wool Socks; ",
            [
                (
                    "return_delivered_order_items",
                    {
                        "order_id": "#W7000003",
                        "item_ids": ["7200000003"],
                        "payment_method_id": "paypal_5520981",
                    },
                )
            ],
            [],
        ),
        (
            "synthetic",
            "lena_voss_8830",
            "Your name is Lena Voss and your email is lena.voss8830@example.com. "
            "You are precise. For #W7000004, change payment to gift_card_3300120. "
            "Ask for the gift card's balance afterwards. ",
            [
                (
                    "modify_pending_order_payment",
                    {"order_id": "#W7000004", "payment_method_id": "gift_card_3300120"},
                )
            ],
            ["55.5"],
        ),
        (
            "synthetic",
            "nina_park_7301",
            "Your name is Nina Park and your zip code is 98105. You are busy. "
            "For #W7000006, change address to 3 Birch Road, Portland; exchange Desk Lamp "
            "{'light': 'warm'} to {'light': 'cool'} via credit_card_4402117. ",
            [
                (
                    "modify_pending_order_address",
                    {
                        "order_id": "#W7000006",
                        **{
                            k: NINA_NEW[k]
                            for k in ("address1", "address2", "city", "state", "country", "zip")
                        },
                    },
                ),
                (
                    "modify_pending_order_items",
                    {
                        "order_id": "#W7000006",
                        "item_ids": ["7400000001"],
                        "new_item_ids": ["7400000002"],
                        "payment_method_id": "credit_card_4402117",
                    },
                ),
            ],
            [],
        ),
    ],
    "dev": [
        (
            "",
            "nina_park_7301",
            "Your name is Nina Park and your zip code is 98105. You ordered a desk lamp and socks "
            "by mistake and want the order cancelled.",
            [("cancel_pending_order", {"order_id": "#W7000006", "reason": "ordered by mistake"})],
            [],
        ),
        (
            "",
            "ghost_user_0000",
            "Your name is Nobody Here. You want to cancel order #W7000004.",
            [("cancel_pending_order", {"order_id": "#W7000004", "reason": "no longer needed"})],
            [],
        ),
    ],
}


def _call(name: str, kwargs: dict, indent: str) -> str:
    """An `Action(...)` as tau-bench's files write it (kwargs as a Python literal)."""
    return f'{indent}Action(name="{name}", kwargs={json.dumps(kwargs)}),\n'


def tasks_source(split: str) -> str:
    """A tasks_<split>.py in tau-bench's format: `TASKS_<SPLIT> = [Task(...), ...]`."""
    out = ["from tau_bench.types import Task, Action\n\n", f"TASKS_{split.upper()} = [\n"]
    for annotator, user_id, instruction, actions, outputs in TASKS[split]:
        out += [
            "    Task(\n",
            f"        annotator={json.dumps(annotator)},\n",
            f"        user_id={json.dumps(user_id)},\n",
            f"        instruction={json.dumps(instruction)},\n",
            "        actions=[\n",
        ]
        out += [_call(name, kwargs, " " * 12) for name, kwargs in actions]
        out += ["        ],\n", f"        outputs={json.dumps(outputs)},\n", "    ),\n"]
    out.append("]\n")
    return "".join(out)


def write_checkout(root: str | Path) -> Path:
    """Write the invented checkout's `tau_bench/envs/retail` layout under root; returns that
    folder."""
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    for name, table in (("users", USERS), ("products", PRODUCTS), ("orders", ORDERS)):
        (root / "data" / f"{name}.json").write_text(json.dumps(table, indent=4))
    for split in TASKS:
        (root / f"tasks_{split}.py").write_text(tasks_source(split))
    return root


def base_db() -> dict:
    return copy.deepcopy({"users": USERS, "products": PRODUCTS, "orders": ORDERS})


def _refund(amount, pm_id):
    return {"transaction_type": "refund", "amount": amount, "payment_method_id": pm_id}


def _payment(amount, pm_id):
    return {"transaction_type": "payment", "amount": amount, "payment_method_id": pm_id}


def _swap(order: dict, old: str, new: str) -> None:
    item = next(i for i in order["items"] if i["item_id"] == old)
    variant = PRODUCTS[item["product_id"]]["variants"][new]
    item.update(item_id=new, price=variant["price"], options=dict(variant["options"]))


def expected_db(split: str, index: int) -> dict:
    """The database after the task's gold calls, as tau-bench's tools leave it (worked out by
    hand)."""
    db = base_db()
    users, orders = db["users"], db["orders"]
    lamp_difference = 64.98 - 52.69  # 12.290000000000006: an item change keeps it unrounded
    if (split, index) == ("test", 0):
        orders["#W7000001"].update(
            status="return requested",
            return_items=["7100000001"],
            return_payment_method_id="credit_card_4402117",
        )
    elif (split, index) == ("test", 1):
        # (12.99 - 13.49) + (49.9 - 39.9), rounded
        orders["#W7000003"].update(
            status="exchange requested",
            exchange_items=["7200000003", "7300000001"],
            exchange_new_items=["7200000001", "7300000002"],
            exchange_payment_method_id="paypal_5520981",
            exchange_price_difference=9.5,
        )
    elif (split, index) == ("test", 2):
        users["lena_voss_8830"]["address"] = dict(LENA_NEW)
    elif (split, index) == ("test", 3):
        orders["#W7000002"].update(status="cancelled", cancel_reason="no longer needed")
        orders["#W7000002"]["payment_history"].append(_refund(39.9, "gift_card_9910023"))
        # refunded at once
        users["nina_park_7301"]["payment_methods"]["gift_card_9910023"]["balance"] = 99.9
    elif (split, index) == ("test", 4):
        _swap(orders["#W7000005"], "7400000001", "7400000002")
        orders["#W7000005"]["status"] = "pending (item modified)"
        orders["#W7000005"]["payment_history"].append(
            _payment(lamp_difference, "gift_card_3300120")
        )
        users["lena_voss_8830"]["payment_methods"]["gift_card_3300120"]["balance"] = 67.71
    # the return fails (a pending order); the cancel is made
    elif (split, index) in (("test", 5), ("dev", 1)):
        reason = "ordered by mistake" if split == "test" else "no longer needed"
        orders["#W7000004"].update(status="cancelled", cancel_reason=reason)
        orders["#W7000004"]["payment_history"].append(_refund(24.5, "credit_card_6630090"))
    elif (split, index) == ("train", 0):
        orders["#W7000003"].update(
            status="return requested",
            return_items=["7200000003"],
            return_payment_method_id="paypal_5520981",
        )
    elif (split, index) == ("train", 1):
        orders["#W7000004"]["payment_history"] += [
            _payment(24.5, "gift_card_3300120"),
            _refund(24.5, "credit_card_6630090"),
        ]
        users["lena_voss_8830"]["payment_methods"]["gift_card_3300120"]["balance"] = 55.5
    elif (split, index) == ("train", 2):
        order = orders["#W7000006"]
        order["address"] = dict(NINA_NEW)
        _swap(order, "7400000001", "7400000002")
        order["status"] = "pending (item modified)"
        order["payment_history"].append(_payment(lamp_difference, "credit_card_4402117"))
    elif (split, index) == ("dev", 0):
        orders["#W7000006"].update(status="cancelled", cancel_reason="ordered by mistake")
        orders["#W7000006"]["payment_history"].append(_refund(65.68, "credit_card_4402117"))
    return db
