"""The retail tools: tau-bench retail's names, arguments and validation rules, over a copy-on-write `DBView`.

Each tool takes (db view, its arguments) and returns a JSON string, or an error string starting "Error:"; a write
replaces the records it changes in the view's overlay (copies, never the shared records). `TOOLS` maps a name to
(function, parameter names in signature order, is_write). `respond(content)`, the agent's message to the user, is
handled by the environment, not here. `describe_write` words a write, by its ids, for the agent's confirmation message.
"""

from __future__ import annotations

import copy
import json
from typing import Callable, NamedTuple

from teachable.envs.retail.database import DBView

CANCEL_REASONS = ("no longer needed", "ordered by mistake")
WRITE_STATUSES = ("pending (item modified)", "return requested", "exchange requested")  # statuses writes set
RESPOND = "respond"

POLICY = (
    "Identify the user by email or name and zip; serve only them, one looked-up order at a time. Only pending: "
    "cancel, change address, change items once. Only delivered: return or exchange once. New items: available "
    "variants, same product. Refunds: original payment or gift card. Confirm writes exactly; act only on an explicit "
    "yes. Tell a return's refund. Refuse what policy forbids; transfer to a human only on request."
)


def _dump(record: dict) -> str:
    return json.dumps(record)


def _order(db: DBView, order_id) -> dict | None:
    return db.get("orders", order_id) if isinstance(order_id, str) else None


def _id_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _missing_items(order: dict, item_ids: list[str]) -> str | None:
    """The first requested item id the order does not hold often enough (duplicates count)."""
    held = [item["item_id"] for item in order["items"]]
    return next((i for i in item_ids if item_ids.count(i) > held.count(i)), None)


# -- reads ---------------------------------------------------------------------------------------------------------
def find_user_id_by_email(db: DBView, email: str) -> str:
    if not isinstance(email, str):
        return "Error: email must be a string"
    for user_id, user in db.items("users"):
        if user["email"].lower() == email.lower():
            return user_id
    return "Error: user not found"


def find_user_id_by_name_zip(db: DBView, first_name: str, last_name: str, zip: str) -> str:  # noqa: A002
    if not all(isinstance(v, str) for v in (first_name, last_name, zip)):
        return "Error: first_name, last_name and zip must be strings"
    for user_id, user in db.items("users"):
        if (user["name"]["first_name"].lower() == first_name.lower()
                and user["name"]["last_name"].lower() == last_name.lower() and user["address"]["zip"] == zip):
            return user_id
    return "Error: user not found"


def get_user_details(db: DBView, user_id: str) -> str:
    user = db.get("users", user_id) if isinstance(user_id, str) else None
    return _dump(user) if user is not None else "Error: user not found"


def get_order_details(db: DBView, order_id: str) -> str:
    order = _order(db, order_id)
    return _dump(order) if order is not None else "Error: order not found"


def get_product_details(db: DBView, product_id: str) -> str:
    product = db.get("products", product_id) if isinstance(product_id, str) else None
    return _dump(product) if product is not None else "Error: product not found"


# -- writes --------------------------------------------------------------------------------------------------------
def cancel_pending_order(db: DBView, order_id: str, reason: str) -> str:
    order = _order(db, order_id)
    if order is None:
        return "Error: order not found"
    if order["status"] != "pending":
        return "Error: non-pending order cannot be cancelled"
    if reason not in CANCEL_REASONS:
        return "Error: invalid reason"
    order = copy.deepcopy(order)
    user = None
    refunds = []
    for payment in order["payment_history"]:
        pm_id = payment["payment_method_id"]
        refunds.append({"transaction_type": "refund", "amount": payment["amount"], "payment_method_id": pm_id})
        if "gift_card" in pm_id:  # a gift card is refunded at once
            user = user or copy.deepcopy(db.get("users", order["user_id"]))
            method = user["payment_methods"][pm_id]
            method["balance"] = round(method["balance"] + payment["amount"], 2)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    order["payment_history"].extend(refunds)
    db.put("orders", order_id, order)
    if user is not None:
        db.put("users", user["user_id"], user)
    return _dump(order)


def _price_difference(db: DBView, order: dict, item_ids: list[str], new_item_ids: list[str]) -> tuple[float, str]:
    """(new - old total price, error or "") for swapping items for variants of the same products."""
    difference = 0.0
    for item_id, new_item_id in zip(item_ids, new_item_ids):
        item = next(i for i in order["items"] if i["item_id"] == item_id)
        variants = db.get("products", item["product_id"])["variants"]
        if new_item_id not in variants or not variants[new_item_id]["available"]:
            return 0.0, f"Error: new item {new_item_id} not found or available"
        difference += variants[new_item_id]["price"] - item["price"]
    return round(difference, 2), ""


def _check_swap(db: DBView, order_id, item_ids, new_item_ids, payment_method_id, status: str, verb: str):
    """Shared checks of modify_pending_order_items and exchange_delivered_order_items: (order, difference, error)."""
    order = _order(db, order_id)
    if order is None:
        return None, 0.0, "Error: order not found"
    if order["status"] != status:
        return None, 0.0, f"Error: non-{status} order cannot be {verb}"
    if not _id_list(item_ids) or not _id_list(new_item_ids):
        return None, 0.0, "Error: item_ids and new_item_ids must be lists of item ids"
    missing = _missing_items(order, item_ids)
    if missing is not None:
        return None, 0.0, f"Error: {missing} not found"
    if len(item_ids) != len(new_item_ids):
        return None, 0.0, "Error: the number of items to be exchanged should match"
    difference, error = _price_difference(db, order, item_ids, new_item_ids)
    if error:
        return None, 0.0, error
    methods = db.get("users", order["user_id"])["payment_methods"]
    if not isinstance(payment_method_id, str) or payment_method_id not in methods:
        return None, 0.0, "Error: payment method not found"
    method = methods[payment_method_id]
    if method["source"] == "gift_card" and method["balance"] < difference:
        what = "the new item" if status == "pending" else "the price difference"
        return None, 0.0, f"Error: insufficient gift card balance to pay for {what}"
    return order, difference, ""


def modify_pending_order_items(db: DBView, order_id: str, item_ids: list, new_item_ids: list,
                               payment_method_id: str) -> str:
    order, difference, error = _check_swap(db, order_id, item_ids, new_item_ids, payment_method_id, "pending",
                                           "modified")
    if error:
        return error
    order = copy.deepcopy(order)
    order["payment_history"].append({"transaction_type": "payment" if difference > 0 else "refund",
                                     "amount": abs(difference), "payment_method_id": payment_method_id})
    user = db.get("users", order["user_id"])
    if user["payment_methods"][payment_method_id]["source"] == "gift_card":
        user = copy.deepcopy(user)
        method = user["payment_methods"][payment_method_id]
        method["balance"] = round(method["balance"] - difference, 2)
        db.put("users", user["user_id"], user)
    for item_id, new_item_id in zip(item_ids, new_item_ids):
        item = next(i for i in order["items"] if i["item_id"] == item_id)
        variant = db.get("products", item["product_id"])["variants"][new_item_id]
        item["item_id"], item["price"], item["options"] = new_item_id, variant["price"], dict(variant["options"])
    order["status"] = WRITE_STATUSES[0]
    db.put("orders", order_id, order)
    return _dump(order)


def modify_pending_order_address(db: DBView, order_id: str, address1: str, address2: str, city: str, state: str,
                                 country: str, zip: str) -> str:  # noqa: A002
    order = _order(db, order_id)
    if order is None:
        return "Error: order not found"
    if order["status"] != "pending":
        return "Error: non-pending order cannot be modified"
    fields = {"address1": address1, "address2": address2, "city": city, "state": state, "country": country,
              "zip": zip}
    if not all(isinstance(v, str) for v in fields.values()):
        return "Error: address fields must be strings"
    order = copy.deepcopy(order)
    order["address"] = fields
    db.put("orders", order_id, order)
    return _dump(order)


def return_delivered_order_items(db: DBView, order_id: str, item_ids: list, payment_method_id: str) -> str:
    order = _order(db, order_id)
    if order is None:
        return "Error: order not found"
    if order["status"] != "delivered":
        return "Error: non-delivered order cannot be returned"
    methods = db.get("users", order["user_id"])["payment_methods"]
    if not isinstance(payment_method_id, str) or payment_method_id not in methods:
        return "Error: payment method not found"
    if "gift_card" not in payment_method_id and payment_method_id != order["payment_history"][0]["payment_method_id"]:
        return "Error: payment method should be either the original payment method or a gift card"
    if not _id_list(item_ids):
        return "Error: item_ids must be a list of item ids"
    if _missing_items(order, item_ids) is not None:
        return "Error: some item not found"
    order = copy.deepcopy(order)
    order["status"] = WRITE_STATUSES[1]
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = payment_method_id
    db.put("orders", order_id, order)
    return _dump(order)


def exchange_delivered_order_items(db: DBView, order_id: str, item_ids: list, new_item_ids: list,
                                   payment_method_id: str) -> str:
    order, difference, error = _check_swap(db, order_id, item_ids, new_item_ids, payment_method_id, "delivered",
                                           "exchanged")
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


TOOLS: dict[str, Tool] = {
    "find_user_id_by_email": Tool(find_user_id_by_email, ("email",), False),
    "find_user_id_by_name_zip": Tool(find_user_id_by_name_zip, ("first_name", "last_name", "zip"), False),
    "get_user_details": Tool(get_user_details, ("user_id",), False),
    "get_order_details": Tool(get_order_details, ("order_id",), False),
    "get_product_details": Tool(get_product_details, ("product_id",), False),
    "cancel_pending_order": Tool(cancel_pending_order, ("order_id", "reason"), True),
    "modify_pending_order_items": Tool(modify_pending_order_items,
                                       ("order_id", "item_ids", "new_item_ids", "payment_method_id"), True),
    "modify_pending_order_address": Tool(modify_pending_order_address,
                                         ("order_id", "address1", "address2", "city", "state", "country", "zip"),
                                         True),
    "return_delivered_order_items": Tool(return_delivered_order_items, ("order_id", "item_ids", "payment_method_id"),
                                         True),
    "exchange_delivered_order_items": Tool(exchange_delivered_order_items,
                                           ("order_id", "item_ids", "new_item_ids", "payment_method_id"), True),
    "transfer_to_human_agents": Tool(transfer_to_human_agents, ("summary",), False),
}
WRITE_KINDS = {"cancel_pending_order": "cancel", "return_delivered_order_items": "return",
               "exchange_delivered_order_items": "exchange", "modify_pending_order_items": "modify_items",
               "modify_pending_order_address": "modify_address"}
KIND_TOOLS = {kind: name for name, kind in WRITE_KINDS.items()}


def ordered_args(name: str, args: dict) -> dict:
    """The arguments in the tool's signature order (unknown keys last, as given)."""
    params = TOOLS[name].params if name in TOOLS else (("content",) if name == RESPOND else ())
    return {**{p: args[p] for p in params if p in args}, **{k: v for k, v in args.items() if k not in params}}


def call_tool(db: DBView, name: str, args: dict) -> str:
    """Run a tool on the view; a wrong tool name or argument set is an "Error:" string, like a failing tool."""
    tool = TOOLS.get(name)
    if tool is None:
        return f"Error: unknown tool {name}"
    missing = [p for p in tool.params if p not in args]
    extra = [k for k in args if k not in tool.params]
    if missing or extra:
        return f"Error: {name} takes {', '.join(tool.params)}"
    return tool.function(db, **args)


# -- words for the confirmation message and the view --------------------------------------------------------------
def option_text(options: dict) -> str:
    return ", ".join(str(v) for v in options.values())


def address_text(address: dict) -> str:
    parts = [address.get("address1", ""), address.get("address2", ""), address.get("city", ""),
             f"{address.get('state', '')} {address.get('zip', '')}".strip(), address.get("country", "")]
    return ", ".join(p for p in parts if p)


def describe_write(name: str, args: dict) -> str:
    """A short phrase naming exactly what a write does: its kind, order, item ids, new item ids and payment method
    (the item ids' names and options are in the agent's view)."""
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
        return (f"{verb} {ids('item_ids')} -> {ids('new_item_ids')} in {order_id}, difference via "
                f"{args['payment_method_id']}")
    if name == "modify_pending_order_address":
        return f"ship {order_id} to {address_text(args)}"
    return f"{name} {json.dumps(args)}"
