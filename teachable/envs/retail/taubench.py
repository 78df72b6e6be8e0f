"""tau-bench's own retail data and tasks, for users with a tau-bench checkout.

`load_taubench(path, split)` reads `<path>/data/{users,orders,products}.json` as tau-bench lays them
out (users and orders keyed by id; a user record has no `user_id` field, an order has one) and the
tasks of one split, `<path>/tasks_{train,dev,test}.py`, parsed with `ast` (the file is never
executed or imported): each `Task(user_id=..., instruction=..., actions=[Action(name=...,
kwargs={...}), ...], outputs=[...])`.

Every task is kept as written (`TauTask`); `episode_reward` scores an agent's calls and messages on
one by tau-bench's rule, and `replay_gold` an agent that makes its gold calls and says its outputs.
A task becomes an environment `Task` when the scripted user can play it: its target is the database
after all its gold calls (a gold write that fails changes nothing there, as in tau-bench), its goals
are the gold writes that succeed, worded by the user (items, options and addresses read from the
database), identity by email when the instruction mentions the user's email, else by name + zip; the
user knows the order ids its instruction names (`named_orders`), no others. The rest are skipped and
counted by reason: an unknown user, or a write the scripted user cannot ask for. A task whose
instruction has a condition or a change of mind (`unplayable_word`) is flagged (`Task.unplayable`),
counted (`n_unplayable`) and kept, or with unplayable="drop" skipped.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from teachable.envs.retail.database import DBView, load_db
from teachable.envs.retail.tasks import Task, goal_from_write, opening_request, outputs_said
from teachable.envs.retail.tools import TOOLS, WRITE_KINDS, call_tool, ordered_args

SPLITS = ("train", "dev", "test")
_ORDER_ID = re.compile(r"#?\bW(\d{7})\b")
_UNPLAYABLE = re.compile(
    r"\b(?:if|unless|otherwise|in case|instead|prefer\w*|chang\w* (?:\w+ ){0,2}mind|"
    r"mind chang\w*)\b",
    re.IGNORECASE,
)
# tau-bench's terminate tools: they end the episode, replays skip them
TERMINATING = ("transfer_to_human_agents",)


class TauTask(NamedTuple):
    """One task of a tau-bench tasks file, as written there."""

    index: int
    user_id: str | None
    instruction: str
    actions: tuple[tuple[str, dict], ...]  # (tool name, kwargs) in the file's order
    outputs: tuple[str, ...]


class TauBenchData(NamedTuple):
    db: dict
    tasks: list[Task]  # the ones the environment plays
    skipped: dict[str, int]  # reason -> number of tasks
    split: str = "test"
    raw: tuple[TauTask, ...] = ()  # every task of the split
    # loaded tasks whose instruction the scripted user cannot play (`unplayable_word`)
    n_unplayable: int = 0
    # what was done with them: keep (in `tasks`) | drop (counted in `skipped` too)
    unplayable: str = "keep"

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literal(node: ast.AST):
    return ast.literal_eval(node)


def parse_tasks_file(text: str) -> list[dict]:
    """Every `Task(...)` call of a tasks file as {"user_id", "instruction", "actions": [(name,
    kwargs)], "outputs"} (literals only; nothing is evaluated)."""
    tasks = []
    for node in _task_calls(ast.parse(text)):
        fields = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        actions = []
        for call in getattr(fields.get("actions"), "elts", []):
            if isinstance(call, ast.Call) and _name(call.func) == "Action":
                kws = {kw.arg: kw.value for kw in call.keywords if kw.arg}
                actions.append(
                    (_literal(kws["name"]), _literal(kws["kwargs"]) if "kwargs" in kws else {})
                )
        tasks.append(
            {
                "user_id": _literal(fields["user_id"]) if "user_id" in fields else None,
                "instruction": _literal(fields["instruction"]) if "instruction" in fields else "",
                "actions": actions,
                "outputs": [str(o) for o in _literal(fields["outputs"])]
                if "outputs" in fields
                else [],
            }
        )
    return tasks


def _task_calls(node: ast.AST):
    """The `Task(...)` calls under a node, in source order."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Call) and _name(child.func) == "Task":
            yield child
        else:
            yield from _task_calls(child)


def read_tasks(path: str | Path, split: str = "test") -> tuple[TauTask, ...]:
    """The tasks of one split of a checkout's `tau_bench/envs/retail` (tasks_train.py, tasks_dev.py,
    tasks_test.py)."""
    if split not in SPLITS:
        raise ValueError(f"unknown tau-bench task split {split!r}; known: {list(SPLITS)}")
    parsed = parse_tasks_file((Path(path) / f"tasks_{split}.py").read_text())
    return tuple(
        TauTask(
            i,
            t["user_id"],
            t["instruction"],
            tuple((n, dict(k)) for n, k in t["actions"]),
            tuple(t["outputs"]),
        )
        for i, t in enumerate(parsed)
    )


def gold_view(db: dict, task: TauTask) -> DBView:
    """The database tau-bench scores against: the task's gold calls run on a fresh copy, terminate
    tools skipped and failures kept (they change nothing)."""
    view = DBView(db)
    for name, kwargs in task.actions:
        if name not in TERMINATING:
            call_tool(view, name, kwargs)
    return view


def episode_reward(db: dict, task: TauTask, calls, said) -> float:
    """tau-bench's reward for an agent's episode on the task: its tool calls [(name, kwargs)] run in
    order on a fresh copy until a transfer to a human ends it; 1 when that database equals
    `gold_view`'s and every output is in some message it said (`outputs_said`), else 0."""
    view = DBView(db)
    for name, kwargs in calls:
        if name in TERMINATING:
            break
        call_tool(view, name, kwargs)
    return (
        1.0
        if view.hash() == gold_view(db, task).hash() and outputs_said(task.outputs, said)
        else 0.0
    )


def replay_gold(db: dict, task: TauTask) -> float:
    """`episode_reward` of an agent that makes the task's gold calls and says every output in one
    message."""
    return episode_reward(db, task, task.actions, ["The outputs: " + "; ".join(task.outputs)])


def _skip_reason(db: dict, task: TauTask) -> str | None:
    if task.user_id not in db["users"]:
        return "unknown user"
    unknown = next((name for name, _ in task.actions if name not in TOOLS), None)
    return f"unknown tool {unknown}" if unknown else None


def _as_env_task(db: dict, task: TauTask, split: str) -> Task | str:
    """The environment's Task for a tau-bench task, or why the scripted user cannot play it."""
    reason = _skip_reason(db, task)
    if reason:
        return reason
    view, goals = DBView(db), []
    for name, kwargs in task.actions:
        if name in TERMINATING:
            continue
        args = ordered_args(name, kwargs)
        before = view.copy()
        if call_tool(view, name, args).startswith("Error") or not TOOLS[name].is_write:
            continue
        if name not in WRITE_KINDS:
            return f"the scripted user cannot ask for {name}"
        try:
            goal = goal_from_write(before, name, args)
        except (KeyError, IndexError, TypeError):
            return "bad arguments"
        # a return's refund amount is the goal's output only when the task asks for it
        goals.append(replace(goal, outputs=tuple(o for o in goal.outputs if o in task.outputs)))
    user = db["users"][task.user_id]
    identity = "email" if user["email"].lower() in task.instruction.lower() else "name_zip"
    family = (
        "none" if not goals else WRITE_KINDS[goals[0].name] if len(goals) == 1 else "two_writes"
    )
    rng = random.Random(f"retail-taubench:{split}:{task.index}")
    request = (
        opening_request(tuple(goals), rng) if goals else "Hi, I have a question about my account."
    )
    return Task(
        key=f"taubench:{split}:{task.index}",
        family=family,
        user_id=task.user_id,
        identity=identity,
        goals=tuple(goals),
        request=request,
        outputs=task.outputs,
        target_hash=view.hash(),
        instruction=task.instruction,
        known_orders=named_orders(task.instruction),
        unplayable=unplayable_word(task.instruction),
    )


def named_orders(instruction: str) -> tuple[str, ...]:
    """The order ids an instruction names ("#W2378156", or "W2378156" without its '#'), as tau-bench
    spells ids."""
    return tuple(dict.fromkeys("#W" + m for m in _ORDER_ID.findall(instruction)))


def unplayable_word(instruction: str) -> str:
    """The first word or phrase of an instruction that makes it a script the scripted user cannot
    play, "" when none: a condition or an alternative ("if", "unless", "otherwise", "in case",
    "instead", "prefer..."), or a change of mind ("change ... mind", "changed ... mind", "mind
    changes"). The scripted user asks for the gold writes straight away, whatever the agent says;
    these instructions make what it wants depend on the conversation. A word rule: it flags a
    harmless "if" too, and misses a condition worded otherwise."""
    match = _UNPLAYABLE.search(instruction)
    return match.group(0).lower() if match else ""


def load_taubench(path: str | Path, split: str = "test", unplayable: str = "keep") -> TauBenchData:
    """A checkout's database and one split's tasks: every task as written, and those the environment
    plays; the tasks flagged unplayable (`Task.unplayable`) kept among them or, with
    unplayable="drop", skipped."""
    if unplayable not in ("keep", "drop"):
        raise ValueError(f"unplayable must be keep or drop, not {unplayable!r}")
    path = Path(path)
    raw = read_tasks(path, split)
    db = load_db(path / "data")
    tasks: list[Task] = []
    skipped: dict[str, int] = {}
    for task in raw:
        made = _as_env_task(db, task, split)
        if isinstance(made, str):
            skipped[made] = skipped.get(made, 0) + 1
        else:
            tasks.append(made)
    n_unplayable = sum(1 for t in tasks if t.unplayable)
    if unplayable == "drop" and n_unplayable:
        tasks = [t for t in tasks if not t.unplayable]
        skipped["unplayable by the scripted user"] = n_unplayable
    return TauBenchData(db, tasks, skipped, split, raw, n_unplayable, unplayable)
