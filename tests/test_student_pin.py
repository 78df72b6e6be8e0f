"""The pinned offline student: every machine labels the same student, checked by SHA-256, rebuilt
only on request or when the params it was built with are not the current ones."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from teachable.core.params import Params, load_params
from teachable.policy.student import StudentDirError
from teachable.training.student import pin
from tests.project_copy import load_stage

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_pin_is_intact_and_built_with_the_default_params():
    """If this fails after a change to params.yaml's student, env or seed, the pilot would build
    another student on every machine: rebuild (`-S student.rebuild=true`), then `python -m teachable
    pin` and commit the pin."""
    params = load_params(ROOT / "params.yaml")
    record = pin.verify(ROOT / params.student.pinned)
    assert pin.key_differences(record["build_key"], pin.build_key(params)) == []
    assert set(record["files"]) >= {
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "card.json",
    }


def test_a_pin_verifies_and_any_changed_or_missing_file_is_named(tiny_student_dir, tmp_path):
    key = pin.build_key(Params.defaults())
    record = pin.write_pin(tiny_student_dir, tmp_path / "pin", key)
    assert pin.verify(tmp_path / "pin")["files"] == record["files"]
    weights = tmp_path / "pin" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit
    weights.write_bytes(bytes(data))
    with pytest.raises(StudentDirError, match="model.safetensors does not match its pin"):
        pin.verify(tmp_path / "pin")
    weights.unlink()
    with pytest.raises(StudentDirError, match="model.safetensors is missing"):
        pin.verify(tmp_path / "pin")


def test_the_build_key_ignores_where_the_student_runs_but_not_what_is_built():
    base = pin.build_key(Params.defaults())
    served = pin.build_key(
        Params.defaults(student={"device": "cpu", "score_batch_size": 8, "rebuild": True})
    )
    assert pin.key_differences(base, served) == []
    other = pin.build_key(Params.defaults(student={"hidden_size": 64}, env={"levels": ["GoToObj"]}))
    assert pin.key_differences(base, other) == ["env.levels", "student.hidden_size"]


@pytest.fixture
def stage_dir(tiny_student_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pin.write_pin(
        tiny_student_dir, tmp_path / "models/pinned-student", pin.build_key(Params.defaults())
    )
    return tmp_path


def test_the_stage_copies_a_matching_pin_byte_for_byte(stage_dir):
    student = load_stage("student")
    card = student.pinned_card(Params.defaults(), stage_dir / "models/student")
    record = pin.read_pin(stage_dir / "models/pinned-student")
    assert card["pinned"]["files"] == record["files"]
    for name, digest in record["files"].items():
        assert pin.sha256(stage_dir / "models/student" / name) == digest


def test_the_stage_builds_when_asked_or_when_the_pin_is_for_other_params(stage_dir, caplog):
    student = load_stage("student")
    assert (
        student.pinned_card(Params.defaults(student={"rebuild": True}), stage_dir / "out") is None
    )
    with caplog.at_level(logging.WARNING):
        assert (
            student.pinned_card(Params.defaults(student={"max_train_steps": 7}), stage_dir / "out")
            is None
        )
    assert "student.max_train_steps" in caplog.text
    assert not (stage_dir / "out").exists()  # nothing copied


def test_the_pin_command_refuses_a_build_made_with_other_params(stage_dir, capsys):
    from teachable.__main__ import main

    shutil.copytree(stage_dir / "models/pinned-student", stage_dir / "models/student")
    (stage_dir / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    card_path = stage_dir / "models/student/card.json"
    card = {"held_out_success": 0.4}
    card["build_key"] = pin.build_key(Params.defaults(student={"hidden_size": 64}))
    card_path.write_text(json.dumps(card))
    assert main(["pin"]) == 2 and "student.hidden_size" in capsys.readouterr().err
    card["build_key"] = pin.build_key(load_params(stage_dir / "params.yaml"))
    card_path.write_text(json.dumps(card))
    assert main(["pin"]) == 0
    assert pin.verify(stage_dir / "models/pinned-student")["build_key"] == card["build_key"]
