"""The credit gym: its gold reward and exact gold credit, its prompts and tokenizer, deterministic builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from dense_reward.attribution.align import align_credit, policy_token_offsets
from dense_reward.builtin.gym import models, task
from dense_reward.builtin.registry import gold_scorer, load_dataset_rows, model_entry


def _neutral(count: int) -> list[str]:
    """`count` words with no gold role at all."""
    w = task.world()
    roles = w.good | w.bad | w.openers | w.closers | {word for pair in w.pairs for word in pair}
    return [word for word in w.words if word not in roles][:count]


def test_world_roles_are_disjoint_and_fixed() -> None:
    w = task.world()
    assert len(set(w.words)) == task.VOCAB_SIZE
    groups = [w.good, w.bad, w.openers, w.closers, {word for pair in w.pairs for word in pair}]
    assert [len(g) for g in groups] == [12, 12, 4, 4, 8]
    assert len(set().union(*groups)) == 40
    np.testing.assert_allclose(w.transitions.sum(axis=1), 1.0)
    # The world is drawn from a fixed seed: the same words every time and on every machine.
    task.world.cache_clear()
    assert task.world().words == w.words and task.world().pairs == w.pairs


def test_token_values_count_wherever_the_word_is() -> None:
    w = task.world()
    good, bad = sorted(w.good)[0], sorted(w.bad)[0]
    filler = _neutral(6)
    text = " ".join([filler[0], good, filler[1], filler[2], bad, bad, filler[3], filler[4], filler[5]])
    credit = task.gold_token_credit(text)
    expected = np.zeros(9)
    expected[1], expected[4], expected[5] = 0.1, -0.1, -0.1
    np.testing.assert_allclose(credit, expected)
    assert task.gold_reward([text])[0] == pytest.approx(-0.1)


def test_openers_and_closers_count_only_at_their_edge() -> None:
    w = task.world()
    opener, closer = sorted(w.openers)[0], sorted(w.closers)[0]
    filler = _neutral(10)
    at_edges = " ".join([filler[0], filler[1], opener, *filler[2:7], closer, filler[7], filler[8]])
    inside = " ".join(
        [filler[0], filler[1], filler[2], opener, *filler[3:7], closer, filler[7], filler[8], filler[9]]
    )
    edge_credit = task.gold_token_credit(at_edges)
    assert edge_credit[2] == pytest.approx(0.1) and edge_credit[-3] == pytest.approx(0.1)
    assert edge_credit.sum() == pytest.approx(0.2)
    assert task.gold_token_credit(inside).sum() == pytest.approx(0.0)


def test_a_pair_is_split_between_its_words_and_needs_its_order_and_window() -> None:
    first, second = task.world().pairs[0]
    filler = _neutral(5)
    near = " ".join([first, filler[0], filler[1], second, filler[2]])
    credit = task.gold_token_credit(near)
    np.testing.assert_allclose(credit, [0.1, 0, 0, 0.1, 0])
    too_far = " ".join([first, filler[0], filler[1], filler[2], second])
    reversed_order = " ".join([second, filler[0], first, filler[1]])
    assert task.gold_reward([too_far, reversed_order]).tolist() == [0.0, 0.0]
    # Two A's before one B: each A pairs with the nearest B after it, so the B is credited twice.
    twice = " ".join([first, first, second])
    np.testing.assert_allclose(task.gold_token_credit(twice), [0.1, 0.1, 0.2])


def test_the_gold_is_not_additive_in_the_words() -> None:
    first, second = task.world().pairs[0]
    filler = _neutral(2)
    together = task.gold_reward([f"{first} {second}"])[0]
    apart = task.gold_reward([f"{first} {filler[0]}", f"{filler[1]} {second}"]).sum()
    assert together - apart == pytest.approx(task.PAIR_BONUS * task.GOLD_SCALE)


def test_gold_credit_sums_to_the_gold_reward_on_chain_text() -> None:
    _, responses = models.reward_model_samples(300, seed=5)
    gold = task.gold_reward(responses)
    sums = np.array([task.gold_token_credit(text).sum() for text in responses])
    np.testing.assert_allclose(sums, gold, atol=1e-12)
    assert [len(task.gold_token_credit(text)) for text in responses] == [
        len(text.split()) for text in responses
    ]
    assert gold.std() > 0.2  # texts differ in gold, so there is something to learn


def test_unknown_words_earn_nothing_and_the_registry_serves_the_gold() -> None:
    scorer = gold_scorer("credit-gym")
    assert scorer is not None
    good = sorted(task.world().good)[0]
    np.testing.assert_allclose(scorer([f"hello {good} world", ""]), [0.1, 0.0])


def test_prompts_are_short_chain_texts() -> None:
    rows = load_dataset_rows("credit-gym-prompts")
    assert len(rows) == 256 and all(set(row) == {"prompt"} for row in rows)
    words = set(task.world().words)
    lengths = [len(row["prompt"].split()) for row in rows]
    assert min(lengths) >= 4 and max(lengths) <= 8
    assert all(set(row["prompt"].split()) <= words for row in rows)
    assert len({row["prompt"] for row in rows}) > 250
    assert rows == task.prompt_rows()


def test_policy_and_reward_tokens_are_the_words_and_align_exactly() -> None:
    policy_tokenizer = models.tokenizer(for_reward_model=False)
    rm_tokenizer = models.tokenizer(for_reward_model=True)
    _, responses = models.reward_model_samples(5, seed=6)
    for text in responses:
        ids = policy_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text.split())
        decoded, offsets = policy_token_offsets(policy_tokenizer, [*ids, policy_tokenizer.eos_token_id])
        assert decoded == text
        encoded = rm_tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        spans = [tuple(span) for span in encoded["offset_mapping"]]
        assert [text[a:b] for a, b in spans] == text.split()
        # Gold credit on the RM's word spans lands on the same words of the policy, EOS gets none.
        credit = task.gold_token_credit(text)
        np.testing.assert_allclose(align_credit(spans, credit, offsets), [*credit, 0.0])
    assert rm_tokenizer("a b")["input_ids"][0] == rm_tokenizer.cls_token_id


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return load_file(str(folder / "model.safetensors"))


def test_building_is_deterministic(tmp_path: Path, one_torch_thread: None) -> None:
    quiet = lambda line: None  # noqa: E731
    first = models.build_policy(tmp_path / "p1", quiet, steps=3)
    second = models.build_policy(tmp_path / "p2", quiet, steps=3)
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)
    rm_a = models.build_reward_model(tmp_path / "r1", quiet, epochs=1, train_samples=128)
    rm_b = models.build_reward_model(tmp_path / "r2", quiet, epochs=1, train_samples=128)
    a, b = _weights(rm_a), _weights(rm_b)
    assert a.keys() == b.keys() and all(np.array_equal(a[key], b[key]) for key in a)
    assert (rm_a / "agreement.json").read_text() == (rm_b / "agreement.json").read_text()
    assert model_entry("credit-gym-policy").summary and model_entry("credit-gym-rm").summary


def test_gym_dpo_policy_is_tuned_from_the_gym_policy_on_full_length_responses() -> None:
    from dense_reward.builtin.registry import GYM_DPO

    assert (GYM_DPO.policy, GYM_DPO.reward, GYM_DPO.prompts) == ("credit-gym-policy", "credit-gym-rm", "credit-gym-prompts")
    assert GYM_DPO.max_new_tokens == 64  # the gym config's ppo.max_new_tokens: log_ratio reads responses that long
    assert GYM_DPO.pairs <= len(task.prompt_rows())
    assert "DPO" in model_entry("credit-gym-policy-dpo").summary
