"""The accelerate configs `train.launcher` can name (teachable/training/accelerate/): they parse,
`accelerate launch` reads them into the environment its processes see, FSDP wraps a layer class
Qwen3 has, and dvc.yaml starts every training stage through `${train.launcher}` (plain `python` by
default, so the pilot's commands are unchanged)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import pytest
import yaml

from teachable.core.params import TrainParams

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "teachable" / "training" / "accelerate"
DISTRIBUTED = {"ddp": "MULTI_GPU", "fsdp": "FSDP"}


def load(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def launch_args(name: str, *options: str):
    """What `accelerate launch --config_file <name>.yaml [options] stages/train.py Q1-demo` runs
    with."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    args = parser.parse_args(
        ["--config_file", str(CONFIGS / f"{name}.yaml"), *options, "stages/train.py", "Q1-demo"]
    )
    return _validate_launch_command(args)[0]


def launch_env(name: str) -> dict[str, str]:
    """The environment `accelerate launch --config_file <name>.yaml stages/train.py` gives its
    processes."""
    from accelerate.utils.launch import prepare_multi_gpu_env

    return prepare_multi_gpu_env(launch_args(name))


@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_config_has_what_accelerate_needs(name):
    config = load(name)
    assert config["compute_environment"] == "LOCAL_MACHINE"
    assert config["distributed_type"] == DISTRIBUTED[name]
    assert config["mixed_precision"] == "bf16"
    assert isinstance(config["num_processes"], int) and config["num_processes"] >= 1


@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_accelerate_loads_config(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # unknown keys raise here
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type.value == DISTRIBUTED[name]
    assert config.mixed_precision == "bf16"


@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_num_processes_is_set_per_machine(name):
    assert launch_args(name).num_processes == load(name)["num_processes"]
    assert launch_args(name, "--num_processes", "1").num_processes == 1  # the launcher's flag wins


def test_launch_reads_ddp():
    env = launch_env("ddp")
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert "ACCELERATE_USE_FSDP" not in env


def test_launch_reads_fsdp2_wrapping_qwen3_layers():
    env = launch_env("fsdp")
    assert env["ACCELERATE_USE_FSDP"] == "true"
    # LoRA's frozen and trainable parameters share a layer: FSDP2, per parameter
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen3DecoderLayer"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"


def test_fsdp_plugin_wraps_a_qwen3_decoder_layer():
    """The plugin the trainer builds from that environment finds the named class in a Qwen3
    model."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from transformers.models.qwen3.modeling_qwen3 import Qwen3DecoderLayer

    layer = load("fsdp")["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"]
    assert layer == Qwen3DecoderLayer.__name__
    assert layer in Qwen3ForCausalLM._no_split_modules
    with mock.patch.dict(os.environ, launch_env("fsdp")):
        plugin = FullyShardedDataParallelPlugin()
    # FSDP2 always uses the original params
    assert plugin.fsdp_version == 2 and plugin.use_orig_params is None
    model = Qwen3ForCausalLM(
        Qwen3Config(
            vocab_size=64,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            intermediate_size=64,
        )
    )
    plugin.set_auto_wrap_policy(model)
    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {Qwen3DecoderLayer}


def train_stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: s for name, s in stages.items() if "stages/train.py" in s["cmd"]}


def test_train_stages_use_the_launcher():
    stages = train_stages()
    assert set(stages) == {"train", "train_baseline", "train_recovery"}
    for name, stage in stages.items():
        assert stage["cmd"].startswith("${train.launcher} stages/train.py "), name


def test_only_train_stages_use_the_launcher():
    """The micro-runs and the selection runs train in-process (a loaded model, many adapters): plain
    python."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    others = {name for name, s in stages.items() if "${train.launcher}" in s["cmd"]}
    assert others == set(train_stages())


def test_default_launcher_keeps_the_pilot_commands():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    launcher = params["train"]["launcher"]
    assert TrainParams.defaults(launcher=launcher).launcher == "python"
    for stage in train_stages().values():
        assert re.fullmatch(
            r"python stages/train\.py \S+", stage["cmd"].replace("${train.launcher}", launcher)
        )


@pytest.mark.parametrize("name", sorted(DISTRIBUTED))
def test_launcher_naming_a_config_is_valid(name):
    launcher = f"accelerate launch --config_file teachable/training/accelerate/{name}.yaml"
    assert TrainParams.defaults(launcher=launcher).launcher == launcher
    assert (ROOT / launcher.split()[-1]).is_file()


def test_the_batch_is_global_whatever_the_processes():
    """`train.batch_size` is the global batch: one GPU or eight take the same steps; a batch the
    processes cannot share evenly is an error, not a silently different recipe."""
    from teachable.training.lora import per_device_batch

    assert [per_device_batch(16, n) for n in (1, 2, 4, 8)] == [16, 8, 4, 2]
    with pytest.raises(ValueError, match="not a multiple of the 3 training processes"):
        per_device_batch(16, 3)


def test_gpus_pins_every_stage_before_cuda_starts(tmp_path, monkeypatch):
    """`gpus` (e.g. `dvc exp run --queue -S gpus=1`) becomes CUDA_VISIBLE_DEVICES before the stage's
    work; YAML's integer 1 is accepted as "1"; anything but a list of indices is a params error."""
    import os

    from teachable import stage
    from teachable.core.params import Params, ParamsError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "gpus": 1}))
    seen = []
    stage.run(lambda params: seen.append((params.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))))
    assert seen == [("1", "1")]
    assert Params.defaults(gpus="0,3").gpus == "0,3" and Params.defaults().gpus is None
    with pytest.raises(ParamsError, match="gpus"):
        Params.defaults(gpus="cuda:0")


def test_threads_sets_torchs_cpu_threads_in_every_stage(tmp_path, monkeypatch):
    """`threads: 1` reaches torch before the stage's work (a loaded 2-core machine ran 2.7x slower
    at 2 threads); null leaves torch's own count; 0 is a params error naming the key."""
    import torch

    from teachable import stage
    from teachable.core.params import Params, ParamsError

    before = torch.get_num_threads()
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "threads": 1}))
    seen = []
    try:
        stage.run(lambda params: seen.append(torch.get_num_threads()))
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**raw, "threads": None}))
        torch.set_num_threads(2)
        stage.run(lambda params: seen.append(torch.get_num_threads()))
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2]
    with pytest.raises(ParamsError, match="threads"):
        Params.defaults(threads=0)
