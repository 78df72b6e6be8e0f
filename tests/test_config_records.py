import json

import pytest

from teachable.config import ParamsError, load_params, parse_params
from teachable.records import Episode, RecordError, read_jsonl, write_jsonl


def test_project_params_validate():
    params = load_params("params.yaml")
    assert params.student.base_model is None
    assert params.env.levels


def test_unknown_key_is_named():
    with pytest.raises(ParamsError, match=r"student\.hiden_size: unknown key"):
        parse_params({"student": {"hiden_size": 3}})


def test_out_of_range_value_is_named():
    with pytest.raises(ParamsError, match=r"rollouts\.temperature"):
        parse_params({"rollouts": {"temperature": -1}})


def test_unknown_level_is_named():
    with pytest.raises(ParamsError, match=r"env\.levels.*NoSuchLevel"):
        parse_params({"env": {"levels": ["NoSuchLevel"]}})


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
    ep = Episode(episode_id="e", env="babyai", task_id="GoToObj-1", seed=1, policy="p", success=True, reward=0.5,
                 n_steps=3, quadrant="Q1_highU_highL")
    write_jsonl(tmp_path / "x.jsonl", [ep])
    (back,) = read_jsonl(tmp_path / "x.jsonl", Episode)
    assert back == ep and back.model_extra["quadrant"] == "Q1_highU_highL"
