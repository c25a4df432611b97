"""Text-rich tasks: OCR (digits, Latin words, CJK numerals), bar/line charts, rendered math
problems, and text-only tasks (arithmetic, documents, reading comprehension)."""

from __future__ import annotations

import numpy as np

from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.synthetic.registry import qa, register_task
from andesvl_jax.data.synthetic.render import CJK_GLYPHS, draw_cjk, draw_text, font, new_canvas

WORDS = (
    "apple river stone cloud green paper light house music table water north seven chair "
    "phone happy train bread smile tiger"
).split()
CJK_CHARS = sorted(CJK_GLYPHS, key=lambda c: "一二三四五六七八九十".index(c))


def _fit_text_canvas(rng, ctx, text: str, aspect: float = 2.0):
    """A canvas wide enough for `text` at a readable size."""
    h = ctx.side(rng)
    size = max(10, int(h * 0.4))
    w = max(int(h * aspect), int(font(size).getlength(text)) + 2 * size // 2 + 8)
    img, d = new_canvas(w, h, (255, 255, 255))
    draw_text(d, (size // 2, (h - size) // 2), text, size)
    return img


@register_task("ocr_digits")
def ocr_digits_task(rng, ctx):
    n = int(rng.integers(1, 5))
    text = "".join(str(int(d)) for d in rng.integers(0, 10, size=n))
    return qa(
        _fit_text_canvas(rng, ctx, text, 1.5),
        "What number is written?",
        text,
        difficulty="easy" if n <= 2 else "hard",
    )


@register_task("ocr_latin")
def ocr_latin_task(rng, ctx):
    text = " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 3))))
    return qa(
        _fit_text_canvas(rng, ctx, text, 3.0),
        "What text is shown in the image?",
        text,
        script="latin",
    )


@register_task("ocr_cjk")
def ocr_cjk_task(rng, ctx):
    text = "".join(str(c) for c in rng.choice(CJK_CHARS, size=int(rng.integers(1, 4))))
    h = ctx.side(rng)
    size = max(12, int(h * 0.5))
    img, d = new_canvas(max(h, size * len(text) + size), h, (255, 255, 255))
    draw_cjk(d, (size // 2, (h - size) // 2), text, size)
    return qa(img, "What Chinese characters are written?", text, script="cjk")


@register_task("chart")
def chart_task(rng, ctx):
    """Bar or line chart of 3-5 labelled values; question about one value or the maximum."""
    k = int(rng.integers(3, 6))
    labels = "ABCDE"[:k]
    values = [int(v) for v in rng.integers(1, 10, size=k)]
    w, h = int(ctx.side(rng) * 1.5), ctx.side(rng)
    img, d = new_canvas(w, h, (255, 255, 255))
    left, bottom, top = 4, h - max(10, h // 6), 4
    step = (w - left - 4) / k
    fs = max(8, h // 8)
    kind = "bar" if rng.integers(2) else "line"
    pts = []
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        x0 = left + i * step
        y = bottom - (bottom - top) * v / 10
        if kind == "bar":
            d.rectangle((x0 + step * 0.2, y, x0 + step * 0.8, bottom), fill=(60, 110, 200))
        pts.append((x0 + step / 2, y))
        draw_text(d, (x0 + step * 0.35, bottom + 1), lab, fs)
    if kind == "line":
        d.line(pts, fill=(200, 60, 60), width=2)
        for x, y in pts:
            d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(200, 60, 60))
    if rng.integers(2):
        i = int(rng.integers(k))
        q, a = (
            f"In the {kind} chart, what is the value of {labels[i]}? The axis goes from 0 to 10.",
            str(values[i]),
        )
    else:
        q, a = (
            f"Which label has the largest value in the {kind} chart?",
            labels[int(np.argmax(values))],
        )
    return qa(img, q, a, chart=kind, values=values, difficulty="hard")


@register_task("math")
def math_task(rng, ctx):
    """A word problem rendered in the image.

    Checkable integer answer (GRPO) and a worked solution.
    """
    hard = bool(rng.integers(2))
    a, b = (int(v) for v in rng.integers(2, 20 if hard else 10, size=2))
    op = str(rng.choice(["+", "-", "*"] if hard else ["+", "-"]))
    if op == "-" and b > a:
        a, b = b, a
    result = {"+": a + b, "-": a - b, "*": a * b}[op]
    verb = {"+": f"buys {b} more", "-": f"gives away {b}", "*": f"gets {b} boxes of {a}"}[op]
    start = "0" if op == "*" else str(a)
    problem = f"Tom has {start} apples and {verb}."
    h = ctx.side(rng)
    size = max(8, h // 6)
    img, d = new_canvas(max(2 * h, int(font(size).getlength(problem)) + 8), h, (255, 255, 255))
    draw_text(d, (4, h // 3), problem, size)
    reasoning = f"{start} {op} {b} = {result}" if op != "*" else f"{b} * {a} = {result}"
    s = qa(
        img,
        "How many apples does Tom have now? Give the final number.",
        str(result),
        difficulty="hard" if hard else "easy",
        solution=reasoning,
    )
    s.messages[-1] = Message("assistant", str(result), reasoning=reasoning)
    return s


@register_task("math_digits")
def math_digits_task(rng, ctx):
    """Math in the image at the tiny model's reach: a digit expression ("3+4", "8-5") drawn large
    in a fixed layout (each glyph always at the same place and size), the question asks its value.

    The layout is what makes it readable: the tiny model reads the free-size ocr_digits text
    unreliably (~30 %) but classifies fixed-position glyphs easily (even a few pixels of jitter
    cost it most of that), so what is left to learn is the arithmetic. `math` (a rendered English
    sentence) stays the task for the larger models. Canvas max_side x max_side/2 (112 x 56 in the
    demo). Only 155 expressions exist (a, b in 0-9, a >= b for "-") and each has one rendering:
    splits differ in their draws, not in the expressions. easy: a sum below 10; hard: a two-digit
    sum or a difference.
    """
    op = "-" if rng.integers(3) == 0 else "+"
    a, b = (int(v) for v in rng.integers(0, 10, size=2))
    if op == "-" and b > a:
        a, b = b, a
    result = a + b if op == "+" else a - b
    w = ctx.max_side
    h = w // 2
    size = int(h * 0.8)
    f = font(size)
    img, d = new_canvas(w, h, (255, 255, 255))
    for centre, glyph in zip((w / 6, w / 2, 5 * w / 6), (str(a), op, str(b)), strict=True):
        d.text(
            (centre, h / 2),
            glyph,
            fill=(0, 0, 0),
            font=f,
            anchor="mm",
            stroke_width=max(1, size // 20),
            stroke_fill=(0, 0, 0),
        )
    return qa(
        img,
        "What is the value of the expression?",
        str(result),
        difficulty="easy" if op == "+" and result < 10 else "hard",
        expression=f"{a}{op}{b}",
    )


def text_only(question: str, answer: str) -> Sample:
    return Sample(
        [Message("user", question), Message("assistant", answer)], [], meta={"answer": answer}
    )


@register_task("text_arith")
def text_arith_task(rng, ctx):
    """Text-only arithmetic (the joint stage mixes text-only data)."""
    a, b = (int(v) for v in rng.integers(0, 10, size=2))
    return text_only(f"What is {a} + {b}?", str(a + b))


COLOUR_WORDS = ("red green blue yellow purple orange black").split()
SHAPE_WORDS = ("circle square triangle").split()


def _fact(rng, k: int) -> str:
    """One checkable sentence about numbered item k (counts, sums, word lengths, colours)."""
    kind = int(rng.integers(4))
    if kind == 0:
        n = int(rng.integers(2, 10))
        colour, shape = str(rng.choice(COLOUR_WORDS)), str(rng.choice(SHAPE_WORDS))
        return f"Box {k} holds {n} {colour} {shape}s."
    if kind == 1:
        a, b = (int(v) for v in rng.integers(0, 100, size=2))
        return f"Line {k} says that {a} plus {b} is {a + b}."
    if kind == 2:
        w = str(rng.choice(WORDS))
        return f"Word {k} is {w}, which has {len(w)} letters."
    return f"Item {k} is a {rng.choice(COLOUR_WORDS)} {rng.choice(SHAPE_WORDS)}."


@register_task("text_document")
def text_document_task(rng, ctx):
    """Text-only document (joint stage: trained as plain text) of 20-40 checkable sentences.

    About 900-1900 tokens with the embedded character vocabulary: the text-only share that lets the
    packer fill a row's token budget once its patch budget is used up.
    """
    n = int(rng.integers(20, 41))
    lines, para = ["A notebook of facts."], []
    for k in range(1, n + 1):
        para.append(_fact(rng, k))
        if len(para) == 4 or k == n:
            lines.append(" ".join(para))
            para = []
    return Sample(
        [Message("user", "\n".join(lines) + "\n")], [], kind="document", meta={"sentences": n}
    )


@register_task("text_reading")
def text_reading_task(rng, ctx):
    """Text-only reading comprehension: a list of 5-60 items, a question on one, a short answer."""
    n = int(rng.integers(5, 61))
    items = [(str(rng.choice(COLOUR_WORDS)), str(rng.choice(SHAPE_WORDS))) for _ in range(n)]
    passage = " ".join(f"Item {k} is a {c} {s}." for k, (c, s) in enumerate(items, start=1))
    j = int(rng.integers(n))
    if rng.integers(2):
        q, a = f"What colour is item {j + 1}?", items[j][0]
    else:
        q, a = f"What shape is item {j + 1}?", items[j][1]
    s = text_only(f"{passage}\n{q}", a)
    s.meta.update(items=items, item=j + 1, difficulty="hard" if n > 30 else "easy")
    return s
