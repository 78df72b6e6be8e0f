import json

import pytest

import subprocess
import sys

import yaml
from pydantic import BaseModel

import teachable.core.params as params_module
from teachable.core.params import (
    GateParams,
    Params,
    ParamsError,
    PatchRates,
    Section,
    TrainParams,
    load_params,
)
from teachable.envs import configure_envs
from teachable.core.records import Episode, RecordError, read_jsonl, write_jsonl


def test_project_params_validate():
    params = load_params("params.yaml")
    assert params.student.base_model is None
    assert params.env.levels


def _keys(raw: dict, prefix: str = "") -> set[str]:
    return set().union(
        *(
            {prefix + k} if not isinstance(v, dict) else _keys(v, f"{prefix}{k}.")
            for k, v in raw.items()
        )
    )


def _fields(model: type[BaseModel], prefix: str = ""):
    """(dotted name, field) of every field, a nested section's own and its fields'."""
    for name, field in model.model_fields.items():
        yield prefix + name, field
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            yield from _fields(field.annotation, f"{prefix}{name}.")


def test_params_yaml_sets_every_field_of_the_models_and_nothing_else():
    """One source of values: the file lists every key the models type, and no field has a value of
    its own."""
    fields = dict(_fields(Params))
    sections = {name.rpartition(".")[0] for name in fields} - {""}
    assert _keys(yaml.safe_load(open("params.yaml"))) == set(fields) - sections
    assert [name for name, field in fields.items() if not field.is_required()] == []


def test_a_missing_key_is_one_line_naming_every_missing_key(tmp_path):
    raw = yaml.safe_load(open("params.yaml"))
    del raw["train"]["learning_rate"], raw["select"], raw["student"]["patch_rates"]["demo"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError) as error:
        load_params(tmp_path / "params.yaml")
    assert str(error.value) == (
        f"{tmp_path / 'params.yaml'}: missing student.patch_rates.demo, train.learning_rate, "
        "select (every key must be set: see the repository's params.yaml)"
    )


def test_a_section_defaults_are_params_yaml_with_the_overrides():
    params = load_params("params.yaml")
    assert TrainParams.defaults(max_steps=3) == params.train.model_copy(update={"max_steps": 3})
    # a dict merges
    rates = Params.defaults(student={"patch_rates": {"demo": 0.1}}).student.patch_rates
    assert (
        rates
        == PatchRates.defaults(demo=0.1)
        == params.student.patch_rates.model_copy(update={"demo": 0.1})
    )
    assert Params.defaults(label={"horizon": None}).label.horizon is None
    with pytest.raises(ParamsError, match=r"train\.max_step: unknown key"):
        TrainParams.defaults(max_step=3)


def test_defaults_outside_a_checkout_say_where_params_yaml_is_expected(monkeypatch, tmp_path):
    monkeypatch.setattr(params_module, "REPO_PARAMS", tmp_path / "params.yaml")
    params_module._repo_values.cache_clear()
    with pytest.raises(
        ParamsError, match=rf"no params.yaml at {tmp_path}.*load_params\(your params.yaml\)"
    ):
        GateParams.defaults()
    monkeypatch.undo()
    assert GateParams.defaults() == load_params("params.yaml").gates


@pytest.mark.parametrize(
    "raw, key",
    [
        (
            {"predictor": {"targets": {"r2_U": 0.6, "r2_l": 0.5}}},
            r"predictor\.targets\.r2_l: unknown key",
        ),
        ({"predictor": {"ks": [5, -1]}}, r"predictor\.ks\.1"),
        ({"train": {"quadrants": []}}, r"train\.quadrants"),
        ({"train": {"formats": []}}, r"train\.formats"),
        ({"train": {"records_per_cell": 0}}, r"train\.records_per_cell"),
        ({"student": {"shuffle_length_groups": True}}, r"needs student\.group_by_length"),
        ({"shop": {"webshop_rules": "v3"}}, r"shop\.webshop_rules"),
    ],
)
def test_bad_values_inside_sections_are_named(raw, key):
    with pytest.raises(ParamsError, match=key):
        Params.defaults(**raw)


@pytest.mark.heavy
def test_reading_params_imports_no_environment():
    """The params model is core: it must not pull in gymnasium, minigrid or the shop (level names
    are checked by `envs.configure_envs`)."""
    code = (
        "import sys; import teachable.core.params; "
        "print(any(m.startswith(('minigrid', 'gymnasium', 'teachable.envs')) for m in sys.modules))"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_unknown_key_is_named():
    with pytest.raises(ParamsError, match=r"student\.hiden_size: unknown key"):
        Params.defaults(student={"hiden_size": 3})


def test_out_of_range_value_is_named():
    with pytest.raises(ParamsError, match=r"rollouts\.temperature"):
        Params.defaults(rollouts={"temperature": -1})


def test_unknown_level_is_named():
    with pytest.raises(ParamsError, match=r"env\.levels.*NoSuchLevel"):
        configure_envs(Params.defaults(env={"levels": ["NoSuchLevel"]}))


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "eps.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(RecordError, match=r"eps\.jsonl:3: malformed JSON"):
        read_jsonl(path)


def test_record_of_the_wrong_shape_names_file_line_and_field(tmp_path):
    path = tmp_path / "eps.jsonl"
    path.write_text(json.dumps({"episode_id": "e"}) + "\n")
    with pytest.raises(RecordError, match=r"eps\.jsonl:1: not a valid Episode: env"):
        read_jsonl(path, Episode)


def test_jsonl_round_trip_keeps_extra_fields(tmp_path):
    ep = Episode(
        episode_id="e",
        env="babyai",
        task_id="GoToObj-1",
        seed=1,
        policy="p",
        success=True,
        reward=0.5,
        n_steps=3,
        quadrant="Q1_highU_highL",
    )
    write_jsonl(tmp_path / "x.jsonl", [ep])
    (back,) = read_jsonl(tmp_path / "x.jsonl", Episode)
    assert back == ep and back.model_extra["quadrant"] == "Q1_highU_highL"


def test_required_fields_are_named_with_file_and_line(tmp_path):
    from teachable.core.records import InputError, MissingFieldError, require_fields

    path = tmp_path / "labeled.jsonl"
    path.write_text(
        '{"id": "a", "lev": {"L": 1}}\n\n{"id": "b", "lev": {}}\n{"id": "c", "lev": {"L": null}}\n'
    )
    records = read_jsonl(path)
    assert require_fields(records[:1], ["id", "lev.L"], path) == records[:1]
    with pytest.raises(
        MissingFieldError, match=r"labeled\.jsonl:3: the record has no field 'lev\.L'"
    ):
        require_fields(records, ["id", "lev.L"], path)  # line 3: the blank line 2 holds no record
    with pytest.raises(
        InputError, match=r"labeled\.jsonl:4: the record has null for field 'lev\.L'"
    ):
        require_fields(records[2:], ["lev.L"], path, lines=[4])
    ep = Episode(
        episode_id="e",
        env="babyai",
        task_id="t",
        seed=0,
        policy="p",
        success=True,
        reward=1.0,
        n_steps=1,
    )
    require_fields([ep], ["episode_id", "mission"], "rollouts.jsonl")
    with pytest.raises(
        MissingFieldError, match=r"rollouts\.jsonl, record 1: the record has no field 'nope'"
    ):
        require_fields([ep], ["nope"], "rollouts.jsonl")


def test_duplicate_ids_are_named_with_both_lines(tmp_path):
    from teachable.core.records import DuplicateIdError, require_unique

    path = tmp_path / "snapshots.jsonl"
    path.write_text('{"snapshot_id": "a"}\n{"snapshot_id": "b"}\n\n{"snapshot_id": "a"}\n')
    records = read_jsonl(path)
    assert require_unique(records[:2], "snapshot_id", path) == records[:2]
    with pytest.raises(
        DuplicateIdError, match=r"snapshots\.jsonl:4: duplicate snapshot_id 'a' \(first on line 1\)"
    ):
        require_unique(records, "snapshot_id", path)
    with pytest.raises(
        DuplicateIdError, match=r"out\.jsonl:3: duplicate snapshot_id 'a' \(first on line 1\)"
    ):
        # about to be written
        require_unique(records, "snapshot_id", "out.jsonl", lines=range(1, 4))


# ---- non-finite numbers (fault probe, issue 33): refused where read, never a NaN threshold ----


@pytest.mark.parametrize(
    "key",
    [
        "train.num_train_epochs",
        "teacher.timeout_s",
        "quadrants.U_threshold",
        "student.request_timeout_s",
    ],
)
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_params_are_refused_naming_the_key(key, value, tmp_path):
    section, name = key.split(".")
    raw = yaml.safe_load(open("params.yaml"))
    raw[section][name] = yaml.safe_load(value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=rf"{section}\.{name}: .*finite"):
        load_params(path)


@pytest.mark.parametrize(
    "token, where",
    [("NaN", "U"), ("Infinity", "leverage.L_local"), ("-Infinity", "leverage.decision_ci.1")],
)
def test_non_finite_numbers_in_records_name_file_line_and_field(token, where, tmp_path):
    path = tmp_path / "labeled.jsonl"
    good = '{"U": 0.5, "leverage": {"L_local": 0.1, "decision_ci": [0.0, 0.2]}}'
    bad = good.replace(
        {"U": "0.5", "leverage.L_local": "0.1", "leverage.decision_ci.1": "0.2"}[where], token
    )
    path.write_text(f"{good}\n\n{bad}\n")
    with pytest.raises(
        RecordError, match=rf"labeled\.jsonl:3: field '{where}' is {token}, not a finite number"
    ):
        read_jsonl(path)


def test_a_threshold_is_never_computed_from_non_finite_values():
    from teachable.core.params import QuadrantParams
    from teachable.core.records import InputError
    from teachable.labeling.quadrants import thresholds

    records = [{"snapshot_id": f"s{i}", "U": float(i)} for i in range(4)]
    assert thresholds(records, QuadrantParams.defaults())["U"] == 1.5
    records[2]["U"] = float("nan")
    with pytest.raises(
        InputError, match=r"snapshot s2 has U = nan: the U threshold needs finite values"
    ):
        thresholds(records, QuadrantParams.defaults())
