"""The agent corpus: both languages, negatives, held-out combinations never drawn in train, targets
that parse back to the recorded call, and a tokenizer that covers every request."""

import collections

from andesvl_jax.agent.calls import parse_call
from andesvl_jax.agent.corpus import heldout
from andesvl_jax.agent.vocab import check_coverage
from andesvl_jax.data.synthetic import SyntheticSource, TaskContext

CTX = TaskContext(56, 64)


def _samples(task, n, split="train"):
    src = SyntheticSource({task: 1.0}, size=n, seed=3, split=split, ctx=CTX)
    return [src[i] for i in range(n)]


def _combo(meta):
    call = meta["call"]
    args = call.get("arguments") or {}
    return call["function"], tuple(sorted(args.items()))


def test_samples_cover_apis_languages_and_negatives(registry, agent_tokenizer):
    samples = _samples("agent_train", 160)
    apis = collections.Counter(s.meta["api"] for s in samples)
    assert set(apis) - {None} == set(registry.names) and apis[None] > 0
    assert {s.meta["language"] for s in samples} == {"en", "zh"}
    check_coverage(agent_tokenizer, [m.content for s in samples for m in s.messages], "corpus")
    for s in samples:
        call = parse_call(s.meta["answer"], registry)
        assert call.to_json() == s.meta["call"]
        assert s.messages[0].content.startswith("<image>\n")


def test_text_style_targets_name_the_function(registry):
    for s in _samples("agent_text_train", 20):
        call = parse_call(s.meta["answer"], registry, "text")
        assert call.to_json() == s.meta["call"] and "<nexa" not in s.meta["answer"]


# APIs whose held-out rule is on the argument values (the others hold out the object's look:
# icon x colour pairs, with values the train split also has)
VALUE_HELDOUT = {
    "send_email",
    "send_text_message",
    "google_search",
    "amazon_shopping",
    "lost_and_found",
    "instacart_shopping",
    "pet_care",
}


def test_heldout_argument_combinations_are_never_drawn_in_train():
    train = {_combo(s.meta) for s in _samples("agent_train", 300)}
    held = {
        _combo(s.meta)
        for s in _samples("agent_heldout", 150, "eval")
        if s.meta["api"] in VALUE_HELDOUT
    }
    assert held and not train & held
    numbers = [
        s.meta["call"]["arguments"]["phone"]
        for s in _samples("agent_heldout", 150, "eval")
        if s.meta["api"] == "send_text_message"
    ]
    assert numbers and all(sum(map(int, n)) % 5 == 0 for n in numbers)


def test_split_rule():
    assert heldout(1, 3) and not heldout(1, 2)
