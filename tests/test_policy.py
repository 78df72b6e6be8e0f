import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer

from teachable.core.params import Params
from teachable.envs.babyai import ACTIONS
from teachable.policy.hf import to_distribution
from teachable.policy.parsing import parse_action
from teachable.policy.prompts import build_messages


def messages(i, patch=None):
    obs = f"You see: red ball {i + 1} forward{' 1 left' * (i % 2)}. You carry nothing."
    history = [{"obs": "x", "action": ACTIONS[i % 3]}] * (i % 3)
    return build_messages("go to the red ball", obs, ACTIONS, history, patch)


def test_student_dir_loads_with_auto_classes(tiny_student_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_student_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_student_dir)
    assert tokenizer.chat_template and tokenizer.pad_token != tokenizer.eos_token
    assert (tiny_student_dir / "model.safetensors").exists()
    assert model.config.model_type == "qwen3"


def test_the_saved_student_reloads_the_tokenizer_it_was_trained_with(tmp_path):
    """transformers may rebuild a known model type's tokenizer from its own recipe instead of
    tokenizer.json; the student's later stages must see the very tokens it was trained on."""
    from teachable.training.student.build import build_model, train_tokenizer

    params = Params.defaults(
        student={"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
    )
    texts = [
        "You see: red ball 12 forward, grey key 2 left.",
        "i need a walnut chair",
        "click[walnut]",
    ] * 20
    trained = train_tokenizer(texts, 300)
    build_model(params.student, trained, seed=0).save_pretrained(tmp_path)
    trained.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in texts[:3]:
        assert reloaded(text).input_ids == trained(text).input_ids


def test_batched_cached_scores_equal_naive_scores(tiny_policy):
    # different lengths -> left padding; 11 > batch_size 8 -> chunks
    states = [messages(i) for i in range(11)]
    candidates = [ACTIONS[: 2 + i % 5] for i in range(11)]  # different candidate counts per state
    batched = tiny_policy.score(states, candidates)
    for state, cands, scores in zip(states, candidates, batched):
        naive = tiny_policy.score_naive(state, cands)
        np.testing.assert_allclose(scores.logliks, naive, atol=1e-5)
        assert scores.candidates == cands


def test_patch_appears_in_the_prompt_and_changes_the_scores(tiny_policy):
    patch = "Teacher: do 'go forward'."
    prompt = tiny_policy.prompt(messages(0, patch))
    assert patch in prompt and patch not in tiny_policy.prompt(messages(0))
    with_patch, without = tiny_policy.score([messages(0, patch), messages(0)], [ACTIONS, ACTIONS])
    assert not np.allclose(with_patch.logliks, without.logliks)


def test_distribution_and_greedy():
    probs = to_distribution(np.log(np.array([0.2, 0.3, 0.5])))
    np.testing.assert_allclose(probs, [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(to_distribution(np.array([1.0, 3.0, 2.0]), 0), [0, 1, 0])


def test_parse_plain_bracketed_and_tool_calls():
    assert parse_action("go forward", ACTIONS) == "go forward"
    assert parse_action("I think I should turn left now.<|im_end|>", ACTIONS) == "turn left"
    call = (
        '{"tool_calls": [{"function": {"name": "act", "arguments": '
        '"{\\"action\\": \\"pick up\\"}"}}]}'
    )
    assert parse_action(call, ACTIONS) == "pick up"
    assert parse_action("click[Buy Now]", ["click[buy now]", "click[back]"]) == "click[buy now]"
    assert parse_action("search[red shoes]", ["search[...]"]) == "search[red shoes]"
    assert parse_action("fly away", ACTIONS) is None
    assert (
        parse_action('{"tool_calls": [{"function": {"arguments": "{bad json"}}]}', ACTIONS) is None
    )
    assert parse_action("", ACTIONS) is None
