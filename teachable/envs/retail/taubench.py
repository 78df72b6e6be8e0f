"""tau-bench's own retail data and test tasks, for users with a tau-bench checkout.

`load_taubench(path)` reads `<path>/data/{users,orders,products}.json` (the same schema our database uses) and the
tasks in `<path>/tasks_test.py`, parsed with `ast` (the file is never executed or imported): each
`Task(user_id=..., actions=[Action(name=..., kwargs={...}), ...], outputs=[...], instruction=...)`. A task whose
actions use only the tools we implement becomes a `Task`: its writes are the scripted user's goals (items, options
and addresses read from the database), identity by email when the instruction mentions the user's email, else by
name + zip. The rest (an unknown user, a write the scripted user cannot ask for) are skipped and counted.
"""

from __future__ import annotations

import ast
import random
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from teachable.envs.retail.database import DBView, load_db
from teachable.envs.retail.tasks import Task, goal_from_write, opening_request, replay_hash
from teachable.envs.retail.tools import TOOLS, WRITE_KINDS, ordered_args


class TauBenchData(NamedTuple):
    db: dict
    tasks: list[Task]
    skipped: dict[str, int]  # reason -> number of tasks

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
    """Every `Task(...)` call of a tasks file as {"user_id", "instruction", "actions": [(name, kwargs)], "outputs"}
    (literals only; nothing is evaluated)."""
    tasks = []
    for node in _task_calls(ast.parse(text)):
        fields = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        actions = []
        for call in getattr(fields.get("actions"), "elts", []):
            if isinstance(call, ast.Call) and _name(call.func) == "Action":
                kws = {kw.arg: kw.value for kw in call.keywords if kw.arg}
                actions.append((_literal(kws["name"]), _literal(kws["kwargs"]) if "kwargs" in kws else {}))
        tasks.append({"user_id": _literal(fields["user_id"]) if "user_id" in fields else None,
                      "instruction": _literal(fields["instruction"]) if "instruction" in fields else "",
                      "actions": actions,
                      "outputs": [str(o) for o in _literal(fields["outputs"])] if "outputs" in fields else []})
    return tasks


def _task_calls(node: ast.AST):
    """The `Task(...)` calls under a node, in source order."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Call) and _name(child.func) == "Task":
            yield child
        else:
            yield from _task_calls(child)


def load_taubench(path: str | Path) -> TauBenchData:
    path = Path(path)
    db = load_db(path / "data")
    view = DBView(db)
    tasks: list[Task] = []
    skipped: dict[str, int] = {}
    for index, raw in enumerate(parse_tasks_file((path / "tasks_test.py").read_text())):
        reason = None
        if any(name not in TOOLS or (TOOLS[name].is_write and name not in WRITE_KINDS) for name, _ in raw["actions"]):
            reason = "a write the scripted user cannot ask for"
        elif raw["user_id"] not in db["users"]:
            reason = "unknown user"
        if reason is None:
            writes = [(name, ordered_args(name, kwargs)) for name, kwargs in raw["actions"] if TOOLS[name].is_write]
            try:
                goals = tuple(goal_from_write(view, name, args) for name, args in writes)
                # a return's refund amount is the goal's output only when the task asks for it
                goals = tuple(replace(g, outputs=tuple(o for o in g.outputs if o in raw["outputs"])) for g in goals)
            except (KeyError, IndexError, TypeError):
                goals, reason = (), "bad arguments"
        if reason is None:
            target = replay_hash(db, [g.action for g in goals])
            if target is None:
                reason = "a ground-truth write fails"
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        user = db["users"][raw["user_id"]]
        identity = "email" if user["email"].lower() in raw["instruction"].lower() else "name_zip"
        family = ("none" if not goals else WRITE_KINDS[goals[0].name] if len(goals) == 1 else "two_writes")
        rng = random.Random(f"retail-taubench:{index}")
        request = opening_request(goals, rng) if goals else "Hi, I have a question about my account."
        tasks.append(Task(key=f"taubench:{index}", family=family, user_id=raw["user_id"], identity=identity,
                          goals=goals, request=request, outputs=tuple(raw["outputs"]), target_hash=target,
                          instruction=raw["instruction"]))
    return TauBenchData(db, tasks, skipped)
