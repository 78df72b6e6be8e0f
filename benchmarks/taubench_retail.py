"""tau-bench's retail on a real checkout: what loads, what the gold calls score, and whether our
tools do what tau-bench's do.

For each task split (train, dev, test) of `<checkout>/tau_bench/envs/retail`: the tasks read, those
the environment plays and those it skips (by reason), each task's gold calls replayed with our tools
and scored by tau-bench's rule (`replay_gold`: the calls made, the outputs said), and the
environment's expert playing each loaded task to its end. With `--compare-tools` it also runs
tau-bench's own tool classes (imported from the checkout's `tools/*.py` files, with tau-bench's
environment's error handling) on a fresh copy of its data, call by call beside ours: every output
string, and the database after the task, must be the same (canonical JSON: floats as Python prints
them, 0 apart from 0.0), so tau-bench's reward, whose target is its own tools' database, is ours;
`--random-calls N` adds N sequences of random calls (wrong types, unknown ids, missing and extra
arguments among them) compared the same way.

    python benchmarks/taubench_retail.py <checkout> [--compare-tools [--random-calls N]] \
        [--splits test dev train]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import random
import sys
import warnings
import time
import types
from collections import Counter
from pathlib import Path

from teachable.envs.retail import RetailEnv, RetailWorld
from teachable.envs.retail.database import DBView, db_json
from teachable.envs.retail.taubench import SPLITS, TERMINATING, load_taubench, replay_gold
from teachable.envs.retail.tasks import outputs_said
from teachable.envs.retail.tools import TOOLS, call_tool


def taubench_tools(retail: Path) -> dict:
    """tau-bench's tool classes by name, loaded from the checkout's files (their `Tool` base
    stubbed: the package's own __init__ pulls in its LLM agents)."""
    if "tau_bench.envs.tool" not in sys.modules:
        base = types.ModuleType("tau_bench.envs.tool")
        base.Tool = type("Tool", (), {})
        sys.modules["tau_bench.envs.tool"] = base
    tools = {}
    for path in sorted((retail / "tools").glob("*.py")):
        if path.stem == "__init__":
            continue
        spec = importlib.util.spec_from_file_location(f"taubench_tools.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and hasattr(value, "get_info")
                and value.__module__ == module.__name__
            ):
                tools[value.get_info()["function"]["name"]] = value
    return tools


def their_step(tools: dict, data: dict, name: str, kwargs: dict) -> str:
    """One call as tau-bench's `Env.step` makes it (an exception becomes "Error: <message>")."""
    if name not in tools:
        return f"Unknown action {name}"
    try:
        return tools[name].invoke(data=data, **kwargs)
    except Exception as error:  # noqa: BLE001 - as tau-bench's environment
        return f"Error: {error}"


def compare_task(tools: dict, retail: Path, db: dict, task) -> list[str]:
    """Where our tools and tau-bench's differ on a task's gold calls (empty when they agree
    everywhere)."""
    data = {
        t: json.loads((retail / "data" / f"{t}.json").read_text())
        for t in ("orders", "products", "users")
    }
    view, diffs = DBView(db), []
    for step, (name, kwargs) in enumerate(task.actions):
        if name in TERMINATING:
            continue
        ours, theirs = call_tool(view, name, kwargs), their_step(tools, data, name, kwargs)
        if ours != theirs:
            diffs.append(f"call {step} {name}: ours {ours[:120]!r}, tau-bench's {theirs[:120]!r}")
    if db_json(view.to_db()) != db_json(data):
        diffs.append("the database after the gold calls differs")
    return diffs


ODD_VALUES = (None, 5, 3.5, [], ["x"], {"a": 1}, "", "nope", True)  # wrong types and unknown ids
EXPRESSIONS = (
    "2+2",
    "64.98 - 52.69",
    "1/0",
    "(1",
    "2 ** 3 ** 2",
    "abc",
    " 3*(4+5)/7",
    "()",
    "1.5//0.2",
    "(2)(3)",
)


def random_call(rng: random.Random, db: dict, user_id: str) -> tuple[str, dict]:
    """A call of a random tool with arguments drawn mostly from the user's own records, sometimes
    another user's, an odd value, a missing or an extra argument."""
    user = db["users"][user_id]

    def odd(value):
        return rng.choice(ODD_VALUES) if rng.random() < 0.08 else value

    order_id = odd(
        rng.choice(user["orders"]) if rng.random() < 0.8 else rng.choice(list(db["orders"]))
    )
    order = db["orders"].get(order_id) if isinstance(order_id, str) else None
    held = [i["item_id"] for i in order["items"]] if order else ["1234567890"]
    item_ids = rng.sample(held, rng.randint(0, len(held)))
    item_ids += item_ids[:1] if rng.random() < 0.1 else []
    variants = {
        i["item_id"]: list(db["products"][i["product_id"]]["variants"])
        for i in (order or {}).get("items", [])
    }
    new_ids = [rng.choice(variants.get(i, ["0000000000"])) for i in item_ids][
        : len(item_ids) - (rng.random() < 0.05)
    ]
    pm = odd(rng.choice([*user["payment_methods"], "gift_card_0000000"]))
    address = {
        k: rng.choice(["1 A St", "", "Boston", "MA", "USA", "02110"])
        for k in ("address1", "address2", "city", "state", "country", "zip")
    }
    name = rng.choice(sorted(TOOLS))
    args = {
        "expression": rng.choice(EXPRESSIONS),
        "thought": "hmm",
        "summary": "x",
        "order_id": order_id,
        "email": odd(rng.choice([user["email"], user["email"].upper(), "x@y.z"])),
        "first_name": user["name"]["first_name"],
        "last_name": user["name"]["last_name"].lower(),
        "zip": odd(rng.choice([user["address"]["zip"], "00000"])),
        "user_id": odd(user_id if rng.random() < 0.7 else rng.choice(list(db["users"]))),
        "product_id": odd(rng.choice(list(db["products"]))),
        "reason": odd(rng.choice(["no longer needed", "ordered by mistake", "other"])),
        "item_ids": odd(item_ids),
        "new_item_ids": odd(new_ids),
        "payment_method_id": pm,
    }
    kwargs = {
        p: (address if name.startswith("modify") and p in address else args)[p]
        for p in TOOLS[name].params
    }
    if kwargs and rng.random() < 0.03:
        kwargs.pop(rng.choice(list(kwargs)))
    if rng.random() < 0.03:
        kwargs["extra"] = 1
    return name, kwargs


def compare_random_calls(tools: dict, retail: Path, db: dict, n_sequences: int, seed: int = 0):
    """Sequences of 1-12 random calls on one user's records, each on a fresh copy, tau-bench's tools
    beside ours: (calls made by tool and outcome, the differences: an output string or a final
    database)."""
    rng, raw, diffs, made = random.Random(seed), (retail / "data"), [], Counter()
    users = [u for u, record in db["users"].items() if record["orders"]]
    for sequence in range(n_sequences):
        user_id = rng.choice(users)
        data = {
            t: json.loads((raw / f"{t}.json").read_text()) for t in ("orders", "products", "users")
        }
        view = DBView(db)
        for _ in range(rng.randint(1, 12)):
            name, kwargs = random_call(rng, db, user_id)
            ours = call_tool(view, name, copy.deepcopy(kwargs))
            theirs = their_step(tools, data, name, copy.deepcopy(kwargs))
            made[name, "error" if ours.startswith("Error") else "ok"] += 1
            if ours != theirs:
                diffs.append(f"{name}({kwargs}): ours {ours[:100]!r}, tau-bench's {theirs[:100]!r}")
        if db_json(view.to_db()) != db_json(data):
            diffs.append(f"sequence {sequence}: the final database differs")
    return made, diffs


def failing_writes(db: dict, task) -> int:
    """How many of the task's gold writes fail (tau-bench's target keeps them: they change
    nothing)."""
    view, failed = DBView(db), 0
    for name, kwargs in task.actions:
        if (
            name in TOOLS
            and TOOLS[name].is_write
            and call_tool(view, name, kwargs).startswith("Error")
        ):
            failed += 1
    return failed


def expert_reward(world: RetailWorld, seed: int) -> float:
    env = RetailEnv("all", max_steps=60, world=world)
    env.reset(seed)
    reward, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(env.expert_action())
        done = terminated or truncated
    return reward


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "checkout", type=Path, help="a tau-bench checkout (its root or its tau_bench/envs/retail)"
    )
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS)
    parser.add_argument(
        "--compare-tools", action="store_true", help="run tau-bench's own tools beside ours"
    )
    parser.add_argument(
        "--random-calls",
        type=int,
        default=0,
        metavar="N",
        help="with --compare-tools: also N sequences of random calls (odd arguments included)",
    )
    args = parser.parse_args()
    retail = args.checkout
    if (retail / "tau_bench" / "envs" / "retail").is_dir():
        retail = retail / "tau_bench" / "envs" / "retail"
    tools = taubench_tools(retail) if args.compare_tools else None
    if tools is not None:
        print(
            f"tau-bench's tools: {len(tools)}; ours: {len(TOOLS)}; the same names: "
            f"{sorted(tools) == sorted(TOOLS)}"
        )
    for split in args.splits:
        start = time.perf_counter()
        data = load_taubench(retail, split)
        world = RetailWorld(data.db, data.tasks, data.n_skipped, data.n_unplayable)
        gold = [replay_gold(data.db, task) for task in data.raw]
        expert = [expert_reward(world, seed) for seed in range(len(data.tasks))]
        unsayable = sum(
            1
            for t in data.tasks
            if not outputs_said(t.outputs, [" ".join(g.outputs) for g in t.goals])
        )
        print(
            f"\n{split}: {len(data.raw)} tasks; the environment plays "
            f"{len(data.tasks)}, skips {data.n_skipped}"
        )
        for reason, n in sorted(data.skipped.items(), key=lambda kv: -kv[1]):
            print(f"  skipped, {reason}: {n}")
        withholding = sum(
            1 for t in data.tasks if any(g.order_id not in t.known_orders for g in t.goals)
        )
        print(
            f"  flagged unplayable by the scripted user (a condition or a change of mind; kept): "
            f"{data.n_unplayable} of {len(data.tasks)}; withholding an order id: "
            f"{withholding}"
        )
        print(
            "  gold calls replayed, reward 1 (tau-bench's rule, our tools): "
            f"{int(sum(gold))}/{len(gold)}"
        )
        failing = [t.index for t in data.raw if failing_writes(data.db, t)]
        print(
            "  tasks with a gold write that fails (kept; scored 1 as tau-bench scores them): "
            f"{len(failing)} {failing}"
        )
        print(
            "  the expert, reward 1 in the environment: "
            f"{int(sum(expert))}/{len(expert)} ({unsayable} loaded tasks need an "
            "output other than a return's refund, said in free text)"
        )
        print(
            "  tools called in the gold calls: "
            f"{dict(Counter(n for t in data.raw for n, _ in t.actions))}"
        )
        if tools is not None:
            differing = {
                t.index: d for t in data.raw if (d := compare_task(tools, retail, data.db, t))
            }
            print(
                "  tau-bench's tools beside ours: "
                f"{len(data.raw) - len(differing)}/{len(data.raw)} tasks identical "
                "(every output string and the final database)"
            )
            for index, diffs in list(differing.items())[:10]:
                print(f"    task {index}: " + "; ".join(diffs[:3]))
        print(f"  ({time.perf_counter() - start:.1f} s)")
    if tools is not None and args.random_calls:
        # tau-bench's calculate `eval`s "(2)(3)", and Python warns of a missing comma
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            made, diffs = compare_random_calls(
                tools, retail, load_taubench(retail, "test").db, args.random_calls
            )
        print(
            f"\nrandom calls, tau-bench's tools beside ours: {sum(made.values())} calls "
            f"in {args.random_calls} sequences, {len(diffs)} differences"
        )
        print(
            "  (ok / error) by tool: "
            + ", ".join(f"{n} {made[n, 'ok']}/{made[n, 'error']}" for n in sorted(TOOLS))
        )
        for diff in diffs[:10]:
            print(f"  {diff}")


if __name__ == "__main__":
    main()
