"""The retail tools: all 16 of tau-bench retail's, with its names, arguments, outputs, error strings
and database effects, over a copy-on-write `DBView`.

Each tool takes (db view, its arguments) and returns a string (JSON, an id, a number, or an error
starting "Error:"). Checks run in tau-bench's order, and a write replaces the records it changes in
the view's overlay (copies, never the shared records) only once every check passed, so a failing
call changes nothing, as in tau-bench. Amounts are computed as tau-bench computes them: an item
change's price difference is not rounded, an exchange's is. `call_tool` runs a tool the way
tau-bench's environment does: an exception (e.g. an argument of the wrong type) becomes "Error:
<message>", a wrong argument set Python's own message for tau-bench's tool class, an unknown name
"Unknown action <name>". `TOOLS` maps a name to (function, parameter names in signature order,
is_write); the environment lists the agent only the `LISTED` ones, and the scripted user asks only
for the `WRITE_KINDS` writes. `respond(content)`, the agent's message to the user, is handled by the
environment, not here. `describe_write` words a write, by its ids, for the agent's confirmation
message.
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import warnings
from typing import Callable, NamedTuple

from teachable.envs.retail.database import DBView

CANCEL_REASONS = ("no longer needed", "ordered by mistake")
# statuses writes set
WRITE_STATUSES = ("pending (item modified)", "return requested", "exchange requested")
RESPOND = "respond"
CALCULATOR_CHARS = "0123456789+-*/(). "

POLICY = (
    "Identify the user by email or name and zip; serve only them, one looked-up order at a time. "
    "Only pending: cancel, change address, change items once. Only delivered: "
    "return or exchange once. New items: available variants, same product. Refunds: "
    "original payment or gift card. Confirm writes exactly; act only on an explicit yes. "
    "Tell a return's refund. Refuse what policy forbids; transfer to a human only on request."
)


def _dump(record: dict) -> str:
    return json.dumps(record)


def _record(db: DBView, table: str, key) -> dict:
    """`data[table][key]` as tau-bench reads it: a missing key raises KeyError, an unhashable one
    TypeError."""
    record = db.get(table, key)
    if record is None:
        raise KeyError(key)
    return record


def _id_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _missing_item(item_ids, order: dict):
    """The first requested item id the order does not hold often enough (duplicates count), or
    None."""
    held = [item["item_id"] for item in order["items"]]
    return next((i for i in item_ids if item_ids.count(i) > held.count(i)), None)


# -- reads -----------------------------------------------------------------------------------------
def find_user_id_by_email(db: DBView, email: str) -> str:
    for user_id, user in db.items("users"):
        if user["email"].lower() == email.lower():
            return user_id
    return "Error: user not found"


def find_user_id_by_name_zip(
    db: DBView,
    first_name: str,
    last_name: str,
    zip: str,  # noqa: A002
) -> str:
    for user_id, user in db.items("users"):
        if (
            user["name"]["first_name"].lower() == first_name.lower()
            and user["name"]["last_name"].lower() == last_name.lower()
            and user["address"]["zip"] == zip
        ):
            return user_id
    return "Error: user not found"


def get_user_details(db: DBView, user_id: str) -> str:
    return _dump(db.get("users", user_id)) if db.has("users", user_id) else "Error: user not found"


def get_order_details(db: DBView, order_id: str) -> str:
    return (
        _dump(db.get("orders", order_id))
        if db.has("orders", order_id)
        else "Error: order not found"
    )


def get_product_details(db: DBView, product_id: str) -> str:
    return (
        _dump(db.get("products", product_id))
        if db.has("products", product_id)
        else "Error: product not found"
    )


def list_all_product_types(db: DBView) -> str:
    """{product name: product id}, sorted by name (a later product of the same name wins, as in
    tau-bench)."""
    names = {product["name"]: product["product_id"] for _, product in db.items("products")}
    return json.dumps(dict(sorted(names.items())))


_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Pow: operator.pow,
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
# an integer power past this (|base| > 1) is past a float's range: refused, not computed
MAX_EXPONENT = 100_000


def _evaluate(node: ast.AST):
    """What Python's `eval` gives for an expression over the calculator's characters, without
    running it: numbers, + - * / // **, signs and parentheses; a call such as "(2)(3)" fails as it
    would."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if (
            isinstance(node.op, ast.Pow)
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > MAX_EXPONENT
        ):
            raise OverflowError("int too large to convert to float")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(e) for e in node.elts)
    if isinstance(node, ast.Call):
        raise TypeError(f"'{type(_evaluate(node.func)).__name__}' object is not callable")
    raise SyntaxError("invalid syntax")


def calculate(db: DBView, expression: str) -> str:
    """An arithmetic expression's value rounded to 2 decimals, as tau-bench's `eval` of it gives."""
    if not all(char in CALCULATOR_CHARS for char in expression):
        return "Error: invalid characters in expression"
    try:
        # e.g. a list of digit strings passes the character check
        if not isinstance(expression, str):
            raise TypeError("eval() arg 1 must be a string, bytes or code object")
        with warnings.catch_warnings():  # "(2)(3)": Python warns of the missing comma while parsing
            warnings.simplefilter("ignore", SyntaxWarning)
            # eval drops leading spaces
            tree = ast.parse(expression.lstrip(" "), "<string>", "eval")
        return str(round(float(_evaluate(tree)), 2))
    # tau-bench reports any failure of the expression as its message
    except Exception as error:  # noqa: BLE001
        return f"Error: {error}"


def think(db: DBView, thought: str) -> str:
    """The agent's note to itself: no effect, an empty result."""
    return ""


# -- writes ----------------------------------------------------------------------------------------
def cancel_pending_order(db: DBView, order_id: str, reason: str) -> str:
    if not db.has("orders", order_id):
        return "Error: order not found"
    order = db.get("orders", order_id)
    if order["status"] != "pending":
        return "Error: non-pending order cannot be cancelled"
    if reason not in CANCEL_REASONS:
        return "Error: invalid reason"
    order, user = copy.deepcopy(order), None
    refunds = []
    for payment in order["payment_history"]:
        pm_id = payment["payment_method_id"]
        refunds.append(
            {"transaction_type": "refund", "amount": payment["amount"], "payment_method_id": pm_id}
        )
        if "gift_card" in pm_id:  # a gift card is refunded at once
            user = user or copy.deepcopy(_record(db, "users", order["user_id"]))
            method = user["payment_methods"][pm_id]
            method["balance"] = round(method["balance"] + payment["amount"], 2)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    order["payment_history"].extend(refunds)
    db.put("orders", order_id, order)
    if user is not None:
        db.put("users", order["user_id"], user)
    return _dump(order)


def _check_swap(
    db: DBView, order_id, item_ids, new_item_ids, payment_method_id, status: str, verb: str
):
    """The checks modify_pending_order_items and exchange_delivered_order_items share, in
    tau-bench's order: (order, price difference new - old, error). The difference is summed item by
    item from an integer 0, as tau-bench sums it; the caller rounds it or not."""
    if not db.has("orders", order_id):
        return None, 0, "Error: order not found"
    order = db.get("orders", order_id)
    if order["status"] != status:
        return None, 0, f"Error: non-{status} order cannot be {verb}"
    missing = _missing_item(item_ids, order)
    if missing is not None:
        return None, 0, f"Error: {missing} not found"
    if len(item_ids) != len(new_item_ids):
        return None, 0, "Error: the number of items to be exchanged should match"
    difference = 0
    for item_id, new_item_id in zip(item_ids, new_item_ids):
        item = next(i for i in order["items"] if i["item_id"] == item_id)
        variants = _record(db, "products", item["product_id"])["variants"]
        if not (new_item_id in variants and variants[new_item_id]["available"]):
            return None, 0, f"Error: new item {new_item_id} not found or available"
        difference += variants[new_item_id]["price"] - item["price"]
    return order, difference, ""


def _payment_check(db: DBView, order: dict, payment_method_id, amount, what: str) -> str:
    """ "" when the user holds the payment method and, for a gift card, its balance covers the
    amount."""
    methods = _record(db, "users", order["user_id"])["payment_methods"]
    if payment_method_id not in methods:
        return "Error: payment method not found"
    method = methods[payment_method_id]
    if method["source"] == "gift_card" and method["balance"] < amount:
        return f"Error: insufficient gift card balance to pay for {what}"
    return ""


def _charge_gift_card(db: DBView, user_id: str, pm_id: str, amount) -> None:
    """Take an amount off a gift card (a negative one adds), rounding the balance to cents as
    tau-bench does."""
    user = copy.deepcopy(_record(db, "users", user_id))
    method = user["payment_methods"][pm_id]
    method["balance"] = round(method["balance"] - amount, 2)
    db.put("users", user_id, user)


def modify_pending_order_items(
    db: DBView, order_id: str, item_ids: list, new_item_ids: list, payment_method_id: str
) -> str:
    order, difference, error = _check_swap(
        db, order_id, item_ids, new_item_ids, payment_method_id, "pending", "modified"
    )
    error = error or _payment_check(db, order, payment_method_id, difference, "the new item")
    if error:
        return error
    order = copy.deepcopy(order)
    order["payment_history"].append(
        {
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": abs(difference),
            "payment_method_id": payment_method_id,
        }
    )
    if (
        _record(db, "users", order["user_id"])["payment_methods"][payment_method_id]["source"]
        == "gift_card"
    ):
        _charge_gift_card(db, order["user_id"], payment_method_id, difference)
    for item_id, new_item_id in zip(item_ids, new_item_ids):
        item = next(i for i in order["items"] if i["item_id"] == item_id)
        variant = _record(db, "products", item["product_id"])["variants"][new_item_id]
        item["item_id"], item["price"], item["options"] = (
            new_item_id,
            variant["price"],
            dict(variant["options"]),
        )
    order["status"] = WRITE_STATUSES[0]
    db.put("orders", order_id, order)
    return _dump(order)


def modify_pending_order_address(
    db: DBView,
    order_id: str,
    address1: str,
    address2: str,
    city: str,
    state: str,
    country: str,
    zip: str,
) -> str:  # noqa: A002
    if not db.has("orders", order_id):
        return "Error: order not found"
    if db.get("orders", order_id)["status"] != "pending":
        return "Error: non-pending order cannot be modified"
    order = copy.deepcopy(db.get("orders", order_id))
    order["address"] = {
        "address1": address1,
        "address2": address2,
        "city": city,
        "state": state,
        "country": country,
        "zip": zip,
    }
    db.put("orders", order_id, order)
    return _dump(order)


def modify_pending_order_payment(db: DBView, order_id: str, payment_method_id: str) -> str:
    """Pay a pending order with another of the user's methods: the new one is charged the order's
    one payment and the old one refunded it (a gift card's balance moves at once)."""
    if not db.has("orders", order_id):
        return "Error: order not found"
    order = db.get("orders", order_id)
    if order["status"] != "pending":
        return "Error: non-pending order cannot be modified"
    methods = _record(db, "users", order["user_id"])["payment_methods"]
    if payment_method_id not in methods:
        return "Error: payment method not found"
    history = order["payment_history"]
    if len(history) > 1 or history[0]["transaction_type"] != "payment":
        return "Error: there should be exactly one payment for a pending order"
    original, amount = history[0]["payment_method_id"], history[0]["amount"]
    if original == payment_method_id:
        return "Error: the new payment method should be different from the current one"
    new_method = methods[payment_method_id]
    if new_method["source"] == "gift_card" and new_method["balance"] < amount:
        return "Error: insufficient gift card balance to pay for the order"
    order = copy.deepcopy(order)
    order["payment_history"].extend(
        [
            {
                "transaction_type": "payment",
                "amount": amount,
                "payment_method_id": payment_method_id,
            },
            {"transaction_type": "refund", "amount": amount, "payment_method_id": original},
        ]
    )
    if new_method["source"] == "gift_card":
        _charge_gift_card(db, order["user_id"], payment_method_id, amount)
    if "gift_card" in original:
        _charge_gift_card(db, order["user_id"], original, -amount)
    db.put("orders", order_id, order)
    return _dump(order)


def modify_user_address(
    db: DBView,
    user_id: str,
    address1: str,
    address2: str,
    city: str,
    state: str,
    country: str,
    zip: str,
) -> str:  # noqa: A002
    if not db.has("users", user_id):
        return "Error: user not found"
    user = copy.deepcopy(db.get("users", user_id))
    user["address"] = {
        "address1": address1,
        "address2": address2,
        "city": city,
        "state": state,
        "country": country,
        "zip": zip,
    }
    db.put("users", user_id, user)
    return _dump(user)


def return_delivered_order_items(
    db: DBView, order_id: str, item_ids: list, payment_method_id: str
) -> str:
    if not db.has("orders", order_id):
        return "Error: order not found"
    order = db.get("orders", order_id)
    if order["status"] != "delivered":
        return "Error: non-delivered order cannot be returned"
    if payment_method_id not in _record(db, "users", order["user_id"])["payment_methods"]:
        return "Error: payment method not found"
    if (
        "gift_card" not in payment_method_id
        and payment_method_id != order["payment_history"][0]["payment_method_id"]
    ):
        return "Error: payment method should be either the original payment method or a gift card"
    if _missing_item(item_ids, order) is not None:
        return "Error: some item not found"
    order = copy.deepcopy(order)
    order["status"] = WRITE_STATUSES[1]
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = payment_method_id
    db.put("orders", order_id, order)
    return _dump(order)


def exchange_delivered_order_items(
    db: DBView, order_id: str, item_ids: list, new_item_ids: list, payment_method_id: str
) -> str:
    order, difference, error = _check_swap(
        db, order_id, item_ids, new_item_ids, payment_method_id, "delivered", "exchanged"
    )
    # tau-bench rounds an exchange's difference (not an item change's)
    difference = round(difference, 2)
    error = error or _payment_check(
        db, order, payment_method_id, difference, "the price difference"
    )
    if error:
        return error
    order = copy.deepcopy(order)
    order["status"] = WRITE_STATUSES[2]
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = payment_method_id
    order["exchange_price_difference"] = difference
    db.put("orders", order_id, order)
    return _dump(order)


def transfer_to_human_agents(db: DBView, summary: str) -> str:
    return "Transfer successful"


class Tool(NamedTuple):
    function: Callable[..., str]
    params: tuple[str, ...]
    is_write: bool


ADDRESS = ("address1", "address2", "city", "state", "country", "zip")
TOOLS: dict[str, Tool] = {
    "calculate": Tool(calculate, ("expression",), False),
    "cancel_pending_order": Tool(cancel_pending_order, ("order_id", "reason"), True),
    "exchange_delivered_order_items": Tool(
        exchange_delivered_order_items,
        ("order_id", "item_ids", "new_item_ids", "payment_method_id"),
        True,
    ),
    "find_user_id_by_email": Tool(find_user_id_by_email, ("email",), False),
    "find_user_id_by_name_zip": Tool(
        find_user_id_by_name_zip, ("first_name", "last_name", "zip"), False
    ),
    "get_order_details": Tool(get_order_details, ("order_id",), False),
    "get_product_details": Tool(get_product_details, ("product_id",), False),
    "get_user_details": Tool(get_user_details, ("user_id",), False),
    "list_all_product_types": Tool(list_all_product_types, (), False),
    "modify_pending_order_address": Tool(
        modify_pending_order_address, ("order_id", *ADDRESS), True
    ),
    "modify_pending_order_items": Tool(
        modify_pending_order_items,
        ("order_id", "item_ids", "new_item_ids", "payment_method_id"),
        True,
    ),
    "modify_pending_order_payment": Tool(
        modify_pending_order_payment, ("order_id", "payment_method_id"), True
    ),
    "modify_user_address": Tool(modify_user_address, ("user_id", *ADDRESS), True),
    "return_delivered_order_items": Tool(
        return_delivered_order_items, ("order_id", "item_ids", "payment_method_id"), True
    ),
    "think": Tool(think, ("thought",), False),
    "transfer_to_human_agents": Tool(transfer_to_human_agents, ("summary",), False),
}
# the writes the scripted user asks for (task families), and the tools the environment lists the
# agent
WRITE_KINDS = {
    "cancel_pending_order": "cancel",
    "return_delivered_order_items": "return",
    "exchange_delivered_order_items": "exchange",
    "modify_pending_order_items": "modify_items",
    "modify_pending_order_address": "modify_address",
}
KIND_TOOLS = {kind: name for name, kind in WRITE_KINDS.items()}
LISTED = (
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_user_details",
    "get_order_details",
    "get_product_details",
    "cancel_pending_order",
    "modify_pending_order_items",
    "modify_pending_order_address",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
    "transfer_to_human_agents",
)


def ordered_args(name: str, args: dict) -> dict:
    """The arguments in the tool's signature order (unknown keys last, as given)."""
    params = TOOLS[name].params if name in TOOLS else (("content",) if name == RESPOND else ())
    return {
        **{p: args[p] for p in params if p in args},
        **{k: v for k, v in args.items() if k not in params},
    }


def _argument_error(name: str, params: tuple[str, ...], args: dict) -> str:
    """Python's TypeError for a wrong argument set, as tau-bench's
    `<Class>.invoke(data=..., **kwargs)` raises it ("" when the set is right)."""
    owner = "".join(word.capitalize() for word in name.split("_")) + ".invoke()"
    extra = [key for key in args if key not in params]
    if extra:
        return f"{owner} got an unexpected keyword argument '{extra[0]}'"
    missing = [f"'{p}'" for p in params if p not in args]
    if not missing:
        return ""
    listed = (
        missing[0]
        if len(missing) == 1
        else (
            f"{missing[0]} and {missing[1]}"
            if len(missing) == 2
            else ", ".join(missing[:-1]) + f", and {missing[-1]}"
        )
    )
    plural = "s" if len(missing) > 1 else ""
    return f"{owner} missing {len(missing)} required positional argument{plural}: {listed}"


def call_tool(db: DBView, name: str, args: dict) -> str:
    """Run a tool on the view as tau-bench's environment does: an unknown name is "Unknown action
    <name>", a wrong argument set or any exception "Error: <message>" (and changes nothing)."""
    tool = TOOLS.get(name)
    if tool is None:
        return f"Unknown action {name}"
    wrong = _argument_error(name, tool.params, args)
    if wrong:
        return f"Error: {wrong}"
    try:
        return tool.function(db, **args)
    # tau-bench's environment reports any tool exception as its message
    except Exception as error:  # noqa: BLE001
        return f"Error: {error}"


# -- words for the confirmation message and the view -----------------------------------------------
def option_text(options: dict) -> str:
    return ", ".join(str(v) for v in options.values())


def address_text(address: dict) -> str:
    parts = [
        address.get("address1", ""),
        address.get("address2", ""),
        address.get("city", ""),
        f"{address.get('state', '')} {address.get('zip', '')}".strip(),
        address.get("country", ""),
    ]
    return ", ".join(p for p in parts if p)


def describe_write(name: str, args: dict) -> str:
    """A short phrase naming exactly what a write does: its kind, order, item ids, new item ids and
    payment method (the item ids' names and options are in the agent's view)."""
    order_id = args.get("order_id")

    def ids(key: str) -> str:
        value = args.get(key)
        return ", ".join(value) if _id_list(value) else json.dumps(value)

    if name == "cancel_pending_order":
        return f"cancel {order_id} ({args.get('reason')})"
    if name == "return_delivered_order_items":
        return f"return {ids('item_ids')} from {order_id}, refund to {args['payment_method_id']}"
    if name in ("exchange_delivered_order_items", "modify_pending_order_items"):
        verb = "exchange" if name == "exchange_delivered_order_items" else "change"
        return (
            f"{verb} {ids('item_ids')} -> {ids('new_item_ids')} in {order_id}, difference via "
            f"{args['payment_method_id']}"
        )
    if name == "modify_pending_order_address":
        return f"ship {order_id} to {address_text(args)}"
    return f"{name} {json.dumps(args)}"
