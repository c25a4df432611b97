"""Long-context text tasks, RULER-style (Hsieh et al. 2024), for the KV-eviction evaluation.

Each task hides what the answer needs in a haystack of filler sentences and asks about it at the
end, so an evicting cache that dropped the wrong tokens fails. `long_context_sample(task, rng,
length)` builds one at a given prompt length (characters = tokens with the embedded character
vocabulary); the registered `lc_*` training tasks draw the length from `TaskContext.long_context`.

  niah_single   one needle "The special magic number is 4821." -> "4821"
  niah_multikey 4 needles "The number for key QX is 4821." (3 distractors), one key asked
  vartrack      "VAR QX = 48213." ... "VAR MB = VAR QX." -> "QX MB" (variable tracking, one hop)
  cwe           numbered word list, one word many times -> that word (common-word extraction)
  summary       3 facts among the filler; the reference summary is the facts (scored by ROUGE-1)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from andesvl_jax.data.sample import Sample
from andesvl_jax.data.synthetic.registry import register_task
from andesvl_jax.data.synthetic.tasks_text import COLOUR_WORDS, WORDS, text_only

FILLER_SUBJECTS = "the grass|the sky|the sun|the road|the sea|the wind|a bird|the hill".split("|")
FILLER_VERBS = "is calm|is green|is blue|moves on|was here|looks far|goes by|stays still".split("|")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NOUNS = ("stones", "coins", "cups", "keys", "books", "shells")
CWE_WORDS = tuple(WORDS) + ("lemon", "cabin", "glass", "robot", "plant", "ocean", "piano", "wheel")


def filler_sentence(rng: np.random.Generator) -> str:
    return f"{rng.choice(FILLER_SUBJECTS)} {rng.choice(FILLER_VERBS)}.".capitalize()


def _code(rng, taken: set[str]) -> str:
    while True:
        code = "".join(rng.choice(list(LETTERS), size=2))
        if code not in taken:
            taken.add(code)
            return code


def haystack(rng, needles: list[str], room: int) -> str:
    """Filler sentences up to ~`room` characters with `needles` at random, ordered depths."""
    sentences = []
    size = sum(len(n) + 1 for n in needles)
    while size < room:
        s = filler_sentence(rng)
        sentences.append(s)
        size += len(s) + 1
    slots = np.sort(rng.integers(0, len(sentences) + 1, size=len(needles)))
    for offset, (slot, needle) in enumerate(zip(slots, needles, strict=True)):
        sentences.insert(int(slot) + offset, needle)
    return " ".join(sentences)


def niah_single(rng, room):
    value = f"{int(rng.integers(1000, 10000))}"
    question = "What is the special magic number?"
    text = haystack(rng, [f"The special magic number is {value}."], room - len(question))
    return text, question, value, {}


def niah_multikey(rng, room, keys: int = 4):
    taken: set[str] = set()
    codes = [_code(rng, taken) for _ in range(keys)]
    values = [f"{int(v)}" for v in rng.integers(1000, 10000, size=keys)]
    asked = int(rng.integers(keys))
    question = f"What is the number for key {codes[asked]}?"
    needles = [f"The number for key {c} is {v}." for c, v in zip(codes, values, strict=True)]
    order = rng.permutation(keys)
    text = haystack(rng, [needles[i] for i in order], room - len(question))
    return text, question, values[asked], {"key": codes[asked]}


def vartrack(rng, room):
    taken: set[str] = set()
    first, second, other = (_code(rng, taken) for _ in range(3))
    value, decoy = (f"{int(v)}" for v in rng.choice(np.arange(10000, 100000), 2, replace=False))
    question = f"Which variables are {value}?"
    needles = [f"VAR {first} = {value}.", f"VAR {other} = {decoy}.", f"VAR {second} = VAR {first}."]
    if rng.integers(2):  # the decoy anywhere; the chain in order
        needles = [needles[1], needles[0], needles[2]]
    text = haystack(rng, needles, room - len(question))
    return text, question, f"{first} {second}", {"value": value}


def cwe(rng, room, common_share: float = 0.3):
    """A numbered list of words: one word takes `common_share` of the entries, the rest are drawn
    from the other words (each far rarer); the answer is the common one."""
    common = str(rng.choice(CWE_WORDS))
    others = [w for w in CWE_WORDS if w != common]
    question = "What is the most common word in the list?"
    words, size = [], 0
    while size < room - len(question):
        words.append(common if rng.random() < common_share else str(rng.choice(others)))
        size += len(f"{len(words)}. {words[-1]} ")
    text = " ".join(f"{k}. {w}" for k, w in enumerate(words, start=1))
    return text, question, common, {"count": words.count(common)}


def summary(rng, room, facts: int = 3):
    colours = rng.choice(COLOUR_WORDS, size=facts, replace=False)
    lines = [
        f"Fact: the {c} box holds {int(rng.integers(2, 10))} {rng.choice(NOUNS)}." for c in colours
    ]
    question = "Summarize the facts."
    text = haystack(rng, lines, room - len(question))
    return text, question, " ".join(lines), {}


LONG_TASKS: dict[str, Callable] = {
    "niah_single": niah_single,
    "niah_multikey": niah_multikey,
    "vartrack": vartrack,
    "cwe": cwe,
    "summary": summary,
}
# the metric each task is scored with (eval/long_context.py)
LONG_TASK_METRIC = {name: "exact" for name in LONG_TASKS} | {"summary": "rouge1"}


def long_context_sample(task: str, rng: np.random.Generator, length: int) -> Sample:
    """One `task` sample whose user message is ~`length` characters (context + question)."""
    if task not in LONG_TASKS:
        raise KeyError(f"long-context task {task!r} unknown; expected one of {sorted(LONG_TASKS)}")
    text, question, answer, meta = LONG_TASKS[task](rng, length)
    s = text_only(f"{text}\n{question}", answer)
    s.meta.update(meta, long_task=task, length=length)
    return s


def _register(task: str):
    @register_task(f"lc_{task}")
    def fn(rng, ctx):
        low, high = ctx.long_context
        return long_context_sample(task, rng, int(rng.integers(low, high + 1)))

    fn.__doc__ = f"Long-context '{task}' (tasks_long.py) at TaskContext.long_context characters."
    return fn


for _task in LONG_TASKS:
    _register(_task)
