"""Phone-like GUI screens with widgets and AndesUI-style tasks on the 0-1000 box scale.

grounding: description -> box (correct if the predicted box centre falls inside the target);
referring: box -> description; qa: instruction -> box to tap.
"""

from __future__ import annotations

from andesvl_jax.data.boxes import format_box
from andesvl_jax.data.chat import format_ref
from andesvl_jax.data.synthetic.registry import qa, register_task
from andesvl_jax.data.synthetic.render import draw_text, new_canvas

BUTTONS = {
    "Send": "send the message",
    "Back": "go back",
    "Save": "save the file",
    "Share": "share it",
    "Cancel": "cancel",
    "Search": "search",
    "Login": "log in",
    "Next": "go to the next page",
}


def render_screen(rng, ctx):
    """A 9:16 screen: title bar, 3-4 labelled buttons, a toggle.

    Returns (image, [(label, kind, box)]).
    """
    w = ctx.side(rng)
    h = int(w * 16 / 9)
    img, d = new_canvas(w, h, (250, 250, 252))
    d.rectangle((0, 0, w, h // 10), fill=(40, 90, 200))
    fs = max(7, h // 28)
    draw_text(d, (4, h // 40), "Messages", fs, (255, 255, 255))
    names = [
        str(n) for n in rng.choice(sorted(BUTTONS), size=int(rng.integers(3, 5)), replace=False)
    ]
    widgets = []
    slot_h = (h - h // 10) // (len(names) + 1)
    for i, name in enumerate(names):
        y0 = h // 10 + i * slot_h + slot_h // 4
        x0 = int(rng.integers(2, max(3, w // 3)))
        box = (x0, y0, min(w - 2, x0 + w // 2), y0 + slot_h // 2)
        d.rounded_rectangle(box, radius=3, fill=(220, 225, 235), outline=(90, 90, 90))
        draw_text(d, (box[0] + 3, box[1] + 1), name, fs)
        widgets.append((name, "button", box))
    y0 = h - slot_h + slot_h // 4
    box = (w - w // 4, y0, w - 4, y0 + slot_h // 3)
    d.rounded_rectangle(box, radius=5, fill=(30, 170, 50))
    widgets.append(("Wi-Fi", "toggle", box))
    return img, widgets


def _pick(rng, widgets):
    return widgets[int(rng.integers(len(widgets)))]


@register_task("gui_grounding")
def gui_grounding_task(rng, ctx):
    img, widgets = render_screen(rng, ctx)
    name, kind, box = _pick(rng, widgets)
    target = format_box(box, *img.size)
    return qa(
        img,
        f"Locate {format_ref(f'the {name} {kind}')} in the screen.",
        target,
        box=target,
        difficulty="easy",
    )


@register_task("gui_referring")
def gui_referring_task(rng, ctx):
    img, widgets = render_screen(rng, ctx)
    name, kind, box = _pick(rng, widgets)
    return qa(
        img,
        f"What is the element at {format_box(box, *img.size)}?",
        f"the {name} {kind}",
        difficulty="easy",
    )


@register_task("gui_qa")
def gui_qa_task(rng, ctx):
    img, widgets = render_screen(rng, ctx)
    name, _, box = _pick(rng, widgets[:-1])
    target = format_box(box, *img.size)
    return qa(img, f"Where should I tap to {BUTTONS[name]}?", target, box=target, difficulty="hard")
