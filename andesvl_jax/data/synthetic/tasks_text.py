"""Text-rich tasks: OCR (digits, Latin words, CJK numerals), bar/line charts, rendered math problems."""

from __future__ import annotations

import numpy as np

from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.synthetic.registry import qa, register_task
from andesvl_jax.data.synthetic.render import CJK_GLYPHS, draw_cjk, draw_text, font, new_canvas

WORDS = ("apple river stone cloud green paper light house music table water north seven chair "
         "phone happy train bread smile tiger").split()
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
    return qa(_fit_text_canvas(rng, ctx, text, 1.5), "What number is written?", text,
              difficulty="easy" if n <= 2 else "hard")


@register_task("ocr_latin")
def ocr_latin_task(rng, ctx):
    text = " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 3))))
    return qa(_fit_text_canvas(rng, ctx, text, 3.0), "What text is shown in the image?", text, script="latin")


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
        q, a = f"In the {kind} chart, what is the value of {labels[i]}? The axis goes from 0 to 10.", str(values[i])
    else:
        q, a = f"Which label has the largest value in the {kind} chart?", labels[int(np.argmax(values))]
    return qa(img, q, a, chart=kind, values=values, difficulty="hard")


@register_task("math")
def math_task(rng, ctx):
    """A word problem rendered in the image; checkable integer answer (GRPO) and a worked solution."""
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
    s = qa(img, "How many apples does Tom have now? Give the final number.", str(result),
           difficulty="hard" if hard else "easy", solution=reasoning)
    s.messages[-1] = Message("assistant", str(result), reasoning=reasoning)
    return s


def text_only(question: str, answer: str) -> Sample:
    return Sample([Message("user", question), Message("assistant", answer)], [], meta={"answer": answer})


@register_task("text_arith")
def text_arith_task(rng, ctx):
    """Text-only arithmetic (the joint stage mixes text-only data)."""
    a, b = (int(v) for v in rng.integers(0, 10, size=2))
    return text_only(f"What is {a} + {b}?", str(a + b))
