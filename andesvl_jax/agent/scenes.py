"""Pictures for the agent corpus, drawn with the synthetic renderer: objects, products, pets, rooms
and phone screenshots. Each icon is a few primitives in unit coordinates, coloured by the object's
colour ("main") or a fixed one, so what an argument needs (which product, which bin, which pet and
problem) is in the picture.
"""

from __future__ import annotations

from andesvl_jax.data.synthetic.render import (
    COLOURS,
    draw_shape,
    draw_text,
    new_canvas,
)

FIXED = {
    "white": (255, 255, 255),
    "grey": (140, 140, 140),
    "brown": (120, 70, 30),
    "dark": (30, 30, 30),
}
# icon -> [(primitive, (x0, y0, x1, y1) in the unit box, colour: "main" or a FIXED name)]
ICONS: dict[str, list[tuple[str, tuple[float, float, float, float], str]]] = {
    # products
    "headphones": [
        ("arc", (0.2, 0.15, 0.8, 0.75), "main"),
        ("rect", (0.15, 0.5, 0.3, 0.8), "main"),
        ("rect", (0.7, 0.5, 0.85, 0.8), "main"),
    ],
    "mug": [("rect", (0.25, 0.3, 0.65, 0.85), "main"), ("ring", (0.55, 0.4, 0.85, 0.7), "main")],
    "lamp": [
        ("tri", (0.25, 0.1, 0.75, 0.5), "main"),
        ("rect", (0.47, 0.5, 0.53, 0.85), "dark"),
        ("rect", (0.3, 0.82, 0.7, 0.9), "dark"),
    ],
    "book": [("rect", (0.25, 0.15, 0.75, 0.85), "main"), ("rect", (0.3, 0.2, 0.35, 0.8), "white")],
    "shoe": [("rect", (0.15, 0.55, 0.85, 0.75), "main"), ("rect", (0.15, 0.3, 0.4, 0.6), "main")],
    "watch": [
        ("rect", (0.4, 0.05, 0.6, 0.95), "dark"),
        ("ellipse", (0.25, 0.3, 0.75, 0.7), "main"),
    ],
    # recyclables
    "bottle": [("rect", (0.4, 0.1, 0.6, 0.3), "main"), ("rect", (0.3, 0.3, 0.7, 0.9), "main")],
    "box": [("rect", (0.15, 0.3, 0.85, 0.85), "main"), ("line", (0.15, 0.3, 0.85, 0.85), "dark")],
    "can": [("rect", (0.3, 0.2, 0.7, 0.85), "main"), ("ellipse", (0.3, 0.12, 0.7, 0.28), "grey")],
    "jar": [("ellipse", (0.2, 0.25, 0.8, 0.9), "main"), ("rect", (0.3, 0.12, 0.7, 0.25), "grey")],
    "battery": [
        ("rect", (0.2, 0.35, 0.75, 0.65), "main"),
        ("rect", (0.75, 0.43, 0.85, 0.57), "dark"),
    ],
    # lost items
    "wallet": [("rect", (0.15, 0.3, 0.85, 0.75), "main"), ("rect", (0.6, 0.45, 0.85, 0.6), "dark")],
    "keys": [
        ("ring", (0.1, 0.35, 0.4, 0.65), "main"),
        ("rect", (0.38, 0.47, 0.9, 0.53), "main"),
        ("rect", (0.75, 0.53, 0.82, 0.65), "main"),
    ],
    "phone": [("rect", (0.3, 0.1, 0.7, 0.9), "main"), ("rect", (0.35, 0.18, 0.65, 0.78), "white")],
    "umbrella": [
        ("half", (0.1, 0.15, 0.9, 0.65), "main"),
        ("rect", (0.48, 0.4, 0.52, 0.9), "dark"),
    ],
    "bag": [("rect", (0.2, 0.4, 0.8, 0.9), "main"), ("ring", (0.35, 0.15, 0.65, 0.5), "main")],
    # rooms (the furniture that names the room)
    "bedroom": [("rect", (0.1, 0.5, 0.9, 0.8), "main"), ("rect", (0.1, 0.35, 0.3, 0.55), "white")],
    "kitchen": [
        ("rect", (0.15, 0.4, 0.85, 0.9), "main"),
        ("ellipse", (0.22, 0.45, 0.45, 0.6), "dark"),
        ("ellipse", (0.55, 0.45, 0.78, 0.6), "dark"),
    ],
    "living room": [
        ("rect", (0.1, 0.5, 0.9, 0.8), "main"),
        ("rect", (0.1, 0.3, 0.2, 0.8), "main"),
        ("rect", (0.8, 0.3, 0.9, 0.8), "main"),
    ],
    "bathroom": [
        ("half_down", (0.1, 0.45, 0.9, 0.85), "main"),
        ("rect", (0.75, 0.2, 0.8, 0.5), "grey"),
    ],
    # groceries
    "apple": [
        ("ellipse", (0.2, 0.25, 0.8, 0.85), "main"),
        ("rect", (0.48, 0.1, 0.53, 0.3), "brown"),
    ],
    "banana": [("arc", (0.1, 0.0, 0.9, 0.8), "main")],
    "carrot": [
        ("tri_down", (0.3, 0.25, 0.7, 0.95), "main"),
        ("tri", (0.35, 0.05, 0.65, 0.25), "main"),
    ],
    "milk": [("rect", (0.3, 0.3, 0.7, 0.9), "white"), ("tri", (0.3, 0.1, 0.7, 0.3), "main")],
    "bread": [("half", (0.1, 0.2, 0.9, 0.7), "main"), ("rect", (0.1, 0.45, 0.9, 0.8), "main")],
    "egg": [("ellipse", (0.3, 0.15, 0.7, 0.85), "main")],
    # dishes
    "pizza": [
        ("tri_down", (0.15, 0.15, 0.85, 0.85), "main"),
        ("ellipse", (0.4, 0.3, 0.55, 0.45), "dark"),
    ],
    "burger": [
        ("half", (0.15, 0.2, 0.85, 0.55), "main"),
        ("rect", (0.15, 0.55, 0.85, 0.65), "brown"),
        ("rect", (0.15, 0.65, 0.85, 0.8), "main"),
    ],
    "sushi": [
        ("ellipse", (0.15, 0.3, 0.85, 0.7), "white"),
        ("ellipse", (0.15, 0.25, 0.85, 0.55), "main"),
    ],
    "noodles": [
        ("half_down", (0.1, 0.4, 0.9, 0.9), "main"),
        ("line", (0.3, 0.1, 0.5, 0.5), "dark"),
        ("line", (0.4, 0.1, 0.6, 0.5), "dark"),
    ],
    "salad": [
        ("half_down", (0.1, 0.4, 0.9, 0.9), "white"),
        ("ellipse", (0.25, 0.3, 0.5, 0.55), "main"),
        ("ellipse", (0.5, 0.3, 0.75, 0.55), "main"),
    ],
    # pets
    "dog": [
        ("ellipse", (0.2, 0.25, 0.8, 0.85), "main"),
        ("rect", (0.1, 0.25, 0.25, 0.6), "brown"),
        ("rect", (0.75, 0.25, 0.9, 0.6), "brown"),
    ],
    "cat": [
        ("ellipse", (0.2, 0.3, 0.8, 0.85), "main"),
        ("tri", (0.2, 0.1, 0.4, 0.4), "main"),
        ("tri", (0.6, 0.1, 0.8, 0.4), "main"),
    ],
    "rabbit": [
        ("ellipse", (0.25, 0.45, 0.75, 0.9), "main"),
        ("rect", (0.32, 0.05, 0.42, 0.5), "main"),
        ("rect", (0.58, 0.05, 0.68, 0.5), "main"),
    ],
    "bird": [("ellipse", (0.2, 0.3, 0.75, 0.75), "main"), ("tri", (0.75, 0.45, 0.95, 0.6), "dark")],
}
# pet problem -> marks drawn over the pet (unit coordinates)
PROBLEM_MARKS: dict[str, list[tuple[str, tuple[float, float, float, float], str]]] = {
    "fleas": [
        ("ellipse", (x, y, x + 0.06, y + 0.06), "dark")
        for x, y in ((0.3, 0.4), (0.55, 0.5), (0.4, 0.65), (0.65, 0.7), (0.45, 0.35))
    ],
    "injury": [
        ("rect", (0.35, 0.55, 0.65, 0.62), "white"),
        ("rect", (0.47, 0.45, 0.53, 0.72), "white"),
    ],
    "not eating": [("half_down", (0.0, 0.85, 0.3, 1.0), "grey")],
    "overweight": [("ellipse", (0.05, 0.45, 0.95, 0.95), "main")],
}


def _box(unit, x0, y0, size):
    return (x0 + unit[0] * size, y0 + unit[1] * size, x0 + unit[2] * size, y0 + unit[3] * size)


def draw_parts(d, parts, x0: int, y0: int, size: int, colour: str) -> None:
    """Draw icon parts in the square (x0, y0, size); 'main' parts in COLOURS[colour]."""
    for prim, unit, role in parts:
        fill = COLOURS[colour] if role == "main" else FIXED[role]
        box = _box(unit, x0, y0, size)
        width = max(2, size // 14)
        if prim == "rect":
            d.rectangle(box, fill=fill)
        elif prim == "ellipse":
            d.ellipse(box, fill=fill)
        elif prim == "ring":
            d.ellipse(box, outline=fill, width=width)
        elif prim == "arc":
            d.arc(box, 180, 360, fill=fill, width=width * 2)
        elif prim == "half":
            d.pieslice(box, 180, 360, fill=fill)
        elif prim == "half_down":
            d.pieslice(box, 0, 180, fill=fill)
        elif prim == "line":
            d.line(box, fill=fill, width=width)
        elif prim == "tri":
            d.polygon(
                [((box[0] + box[2]) / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill
            )
        elif prim == "tri_down":
            d.polygon(
                [(box[0], box[1]), (box[2], box[1]), ((box[0] + box[2]) / 2, box[3])], fill=fill
            )
        else:
            raise KeyError(f"icon primitive {prim!r}")


def object_picture(icon: str, colour: str, side: int, rng, problem: str | None = None):
    """One icon (with a pet problem's marks) at a random place on a plain background."""
    img, d = new_canvas(side, side)
    size = int(side * rng.uniform(0.6, 0.85))
    x0, y0 = (int(rng.integers(0, side - size + 1)) for _ in range(2))
    parts = list(ICONS[icon])
    if problem == "overweight":  # a wider body under the head
        parts = PROBLEM_MARKS[problem] + parts
    draw_parts(d, parts, x0, y0, size, colour)
    if problem is not None and problem != "overweight":
        draw_parts(d, PROBLEM_MARKS[problem], x0, y0, size, colour)
    return img


def shape_picture(shape: str, colour: str, side: int, rng):
    """A single basic shape (the search task's object)."""
    img, d = new_canvas(side, side)
    size = int(side * rng.uniform(0.5, 0.8))
    x0, y0 = (int(rng.integers(0, side - size + 1)) for _ in range(2))
    draw_shape(d, shape, (x0, y0, x0 + size, y0 + size), colour)
    return img


def count_picture(icon: str, colour: str, count: int, side: int, rng):
    """`count` copies of an icon in a row-major grid (the grocery quantity)."""
    img, d = new_canvas(side, side)
    cols = 3 if count > 4 else 2
    cell = side // cols
    cells = rng.choice(cols * cols, size=count, replace=False)
    for c in cells:
        r, k = divmod(int(c), cols)
        draw_parts(d, ICONS[icon], k * cell + 1, r * cell + 1, cell - 2, colour)
    return img


def screenshot(title: str, line: str, side: int, rng, accent: str = "blue"):
    """A phone screen: a coloured title bar, then one large line of text (a number or a name)."""
    w = side
    h = int(w * 16 / 9)
    img, d = new_canvas(w, h, (250, 250, 252))
    d.rectangle((0, 0, w, h // 8), fill=COLOURS[accent])
    draw_text(d, (3, h // 40), title, max(7, h // 22), (255, 255, 255))
    size = max(10, int(w / max(4, len(line)) * 1.5))
    y = int(h * rng.uniform(0.3, 0.6))
    draw_text(d, (4, y), line, size)
    return img
