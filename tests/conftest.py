import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# one of several test processes sharing the cores: one thread each, for
if os.environ.get("PYTEST_XDIST_WORKER"):
    # this process and the stages it starts (torch reads it at import)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from teachable.core.params import Params  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """The end-to-end tests (marked slow) first, each module's order kept: with `make test`'s two
    processes (`-n 2 --dist loadfile --no-loadscope-reorder`) one starts the long `dvc repro` at
    once while the other takes the unit tests, instead of the repro starting last and running
    alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def built_shop(tmp_path_factory):
    """A generated 1000-product shop (catalogue + BM25 index), built once per session; modules that
    make shop environments by name point `configure_shop(world_dir=...)` at it and restore the
    default after."""
    from teachable.core.params import ShopParams
    from teachable.envs.shop.build import build_shop

    directory = tmp_path_factory.mktemp("shop")
    build_shop(ShopParams.defaults(n_products=1000, catalog_seed=0), directory)
    return directory


@pytest.fixture(scope="session")
def tiny_student_dir(tmp_path_factory):
    """An untrained offline-student-shaped model saved in HF format (random weights: fine for
    mechanics)."""
    from teachable.policy.prompts import build_messages
    from teachable.training.student.build import build_model, train_tokenizer
    from teachable.envs.babyai import ACTIONS

    params = Params.defaults(
        student={"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
    )
    texts = [
        m["content"]
        for m in build_messages(
            "go to the red ball",
            "You see: red ball 2 forward.",
            ACTIONS,
            [{"obs": "x", "action": "turn left"}],
            "Teacher: do 'go forward'.",
        )
    ]
    tokenizer = train_tokenizer(texts + ACTIONS, 400)
    model = build_model(params.student, tokenizer, seed=0)
    path = tmp_path_factory.mktemp("student")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_policy(tiny_student_dir):
    from teachable.policy.hf import HFPolicy

    return HFPolicy.load(str(tiny_student_dir), device="cpu", batch_size=8)


@pytest.fixture(scope="session")
def pilot_student_dir():
    """The pilot's own student (models/pinned-student, committed to git): trained, so its action
    probabilities are as peaked as the pipeline's. (The random tiny student's float differences
    mostly vanish in 6-decimal rounding.)"""
    return Path(__file__).resolve().parents[1] / "models/pinned-student"


@pytest.fixture(scope="session")
def pilot_policy(pilot_student_dir):
    from teachable.policy.hf import HFPolicy

    return HFPolicy.load(str(pilot_student_dir), device="cpu", batch_size=64)
