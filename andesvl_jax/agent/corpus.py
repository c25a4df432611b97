"""The synthetic multimodal agent corpus: requests (English and Chinese) to the 10 phone APIs of
agent/phone_functions.json, each with a picture that carries what the arguments need, plus requests
no function serves (answered in text).

Registered synthetic tasks (data/synthetic TASKS): `agent_train` / `agent_heldout` (functional-token
targets) and `agent_text_train` / `agent_text_heldout` (the function-name-as-text baseline). The
held-out split has unseen objects and argument values: icon x colour pairs, (function argument)
combinations, quantities and phone numbers that the train split never draws (`HELDOUT` rules).
`Sample.meta`: api (None for a negative), call (FunctionCall / NoCall as JSON), language, split,
answer (the target text).
"""

from __future__ import annotations

import functools

from andesvl_jax.agent.calls import FunctionCall, NoCall, format_call
from andesvl_jax.agent.functions import phone_functions
from andesvl_jax.agent.scenes import count_picture, object_picture, screenshot, shape_picture
from andesvl_jax.data.sample import Message, Sample
from andesvl_jax.data.synthetic.registry import TASKS, register_task
from andesvl_jax.data.synthetic.render import COLOURS, SHAPES

SPLITS = ("train", "heldout")
LANGUAGES = ("en", "zh")
NEGATIVE_FRACTION = 0.12
COLOUR_NAMES = sorted(COLOURS)

TOPIC_ZH = {
    "meeting": "会议",
    "invoice": "发票",
    "holiday": "假期",
    "report": "报告",
    "party": "聚会",
}
MESSAGE_ZH = {
    "running late": "我要迟到了",
    "call me": "给我回电话",
    "on my way": "我在路上",
    "thank you": "谢谢你",
}
STYLE_ZH = {"modern": "现代", "rustic": "乡村", "minimalist": "极简", "classic": "古典"}
SIZE_ZH = {"small": "小", "medium": "中", "large": "大"}
BINS = {"bottle": "plastic", "box": "paper", "can": "metal", "jar": "glass", "battery": "hazardous"}

TEMPLATES: dict[str, dict[str, list[str]]] = {
    "send_email": {
        "en": [
            "Email {recipient} about the {topic}.",
            "Send {recipient} an email about the {topic}.",
            "Write to {recipient} regarding the {topic}.",
        ],
        "zh": [
            "给{recipient}发邮件，关于{topic_zh}。",
            "发一封关于{topic_zh}的邮件给{recipient}。",
        ],
    },
    "send_text_message": {
        "en": ["Text this number: {message}.", "Send a message to this number saying {message}."],
        "zh": ["给这个号码发短信：{message_zh}。", "发短信给这个号码说{message_zh}。"],
    },
    "google_search": {
        "en": ["Search the web for this.", "Look this up on Google."],
        "zh": ["帮我搜索这个。", "在网上查一下这个东西。"],
    },
    "amazon_shopping": {
        "en": ["Buy {quantity} of these on Amazon.", "Order {quantity} of this item from Amazon."],
        "zh": ["在亚马逊上买{quantity}个这个。", "帮我从亚马逊订{quantity}件这个商品。"],
    },
    "smart_recycling": {
        "en": ["Which bin does this go in?", "How do I recycle this?"],
        "zh": ["这个应该扔进哪个垃圾桶？", "这个怎么回收？"],
    },
    "lost_and_found": {
        "en": ["I lost this, please report it.", "Report this item as lost."],
        "zh": ["我丢了这个，帮我报失。", "帮我登记这件失物。"],
    },
    "interior_design": {
        "en": ["Redesign this room in a {style} style.", "Make this room look {style}."],
        "zh": ["把这个房间改成{style_zh}风格。", "用{style_zh}风格重新设计这个房间。"],
    },
    "instacart_shopping": {
        "en": ["Order this many of these from Instacart.", "Get me these groceries on Instacart."],
        "zh": ["在Instacart上买这些。", "帮我订这些食品杂货。"],
    },
    "doordash_delivery": {
        "en": [
            "Order a {size} one of these on DoorDash.",
            "Get me a {size} portion of this delivered.",
        ],
        "zh": ["在DoorDash上点一份{size_zh}的这个。", "帮我外卖一份{size_zh}份的这个。"],
    },
    "pet_care": {
        "en": ["My pet looks unwell, book care for it.", "Help my pet."],
        "zh": ["我的宠物不舒服，帮我预约护理。", "帮帮我的宠物。"],
    },
}
REFUSAL = {"en": "Sorry, I can only use the phone's apps.", "zh": "抱歉，我只能使用手机上的应用。"}
NEGATIVES = {  # request -> how the text answer is made ("colour" of the object, or a refusal)
    "en": [
        ("What colour is this?", "colour"),
        ("Tell me a joke.", "refuse"),
        ("What is the weather like tomorrow?", "refuse"),
    ],
    "zh": [
        ("这是什么颜色？", "colour"),
        ("给我讲个笑话。", "refuse"),
        ("明天天气怎么样？", "refuse"),
    ],
}


def heldout(*indices: int, modulus: int = 4) -> bool:
    """The split rule for a combination of value indices: held out iff their sum % modulus == 0."""
    return sum(indices) % modulus == 0


def _enum(api: str, arg: str) -> tuple[str, ...]:
    spec = next(a for a in registry().get(api).arguments if a.name == arg)
    return spec.enum


@functools.cache
def registry():
    return phone_functions()


def _draw(rng, values, split: str, rule) -> tuple:
    """Draw a tuple of value indices (one per list in `values`) in `split` by `rule(*indices)`."""
    want = split == "heldout"
    for _ in range(1000):
        idx = tuple(int(rng.integers(len(v))) for v in values)
        if rule(*idx) == want:
            return tuple(v[i] for v, i in zip(values, idx, strict=True))
    raise RuntimeError("no combination in this split")


def _colour_icon(rng, icons, split):
    """(icon, colour) with the icon x colour pair in `split`."""
    return _draw(rng, [list(icons), COLOUR_NAMES], split, lambda i, c: heldout(i, c))


def _example(api: str, rng, side: int, split: str) -> tuple[object, dict, dict]:
    """(picture, arguments, template fields) of one request to `api`."""
    if api == "send_email":
        recipient, topic = _draw(
            rng, [_enum(api, "recipient"), _enum(api, "topic")], split, heldout
        )
        return (
            screenshot("Mail", "Inbox", side, rng, "blue"),
            {"recipient": recipient, "topic": topic},
            {"recipient": recipient, "topic": topic, "topic_zh": TOPIC_ZH[topic]},
        )
    if api == "send_text_message":
        want = split == "heldout"
        while True:
            number = f"{int(rng.integers(1000, 10000))}"
            if (sum(map(int, number)) % 5 == 0) == want:
                break
        message = _enum(api, "message")[int(rng.integers(4))]
        return (
            screenshot("Contact", number, side, rng, "green"),
            {"phone": number, "message": message},
            {"message": message, "message_zh": MESSAGE_ZH[message]},
        )
    if api == "google_search":
        shape, colour = _draw(rng, [sorted(SHAPES), COLOUR_NAMES], split, heldout)
        return shape_picture(shape, colour, side, rng), {"query": f"{colour} {shape}"}, {}
    if api == "amazon_shopping":
        product, colour = _colour_icon(rng, _enum(api, "product"), split)
        (quantity,) = _draw(
            rng,
            [range(1, 10)],
            split,
            lambda q: heldout(q, _enum(api, "product").index(product) + 1),
        )
        return (
            object_picture(product, colour, side, rng),
            {"product": product, "quantity": quantity},
            {"quantity": quantity},
        )
    if api == "smart_recycling":
        item, colour = _colour_icon(rng, _enum(api, "item"), split)
        return object_picture(item, colour, side, rng), {"item": item, "bin": BINS[item]}, {}
    if api == "lost_and_found":
        item, colour = _colour_icon(rng, _enum(api, "item"), split)
        return object_picture(item, colour, side, rng), {"item": item, "colour": colour}, {}
    if api == "interior_design":
        room, colour = _colour_icon(rng, _enum(api, "room"), split)
        style = _enum(api, "style")[int(rng.integers(4))]
        return (
            object_picture(room, colour, side, rng),
            {"room": room, "style": style},
            {"style": style, "style_zh": STYLE_ZH[style]},
        )
    if api == "instacart_shopping":
        item, count = _draw(rng, [_enum(api, "item"), range(1, 7)], split, heldout)
        colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
        return count_picture(item, colour, count, side, rng), {"item": item, "quantity": count}, {}
    if api == "doordash_delivery":
        dish, colour = _colour_icon(rng, _enum(api, "dish"), split)
        size = _enum(api, "size")[int(rng.integers(3))]
        return (
            object_picture(dish, colour, side, rng),
            {"dish": dish, "size": size},
            {"size": size, "size_zh": SIZE_ZH[size]},
        )
    if api == "pet_care":
        pet, problem = _draw(rng, [_enum(api, "pet"), _enum(api, "problem")], split, heldout)
        colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
        return object_picture(pet, colour, side, rng, problem), {"pet": pet, "problem": problem}, {}
    raise KeyError(f"no generator for API {api!r}")


def agent_sample(rng, ctx, split: str, style: str) -> Sample:
    """One request (or a negative) of `split`, its target in call `style`."""
    language = LANGUAGES[int(rng.integers(2))]
    side = ctx.side(rng)
    if rng.random() < NEGATIVE_FRACTION:
        icon, colour = _colour_icon(rng, ["apple", "mug", "book", "box", "cat"], split)
        request, kind = NEGATIVES[language][int(rng.integers(len(NEGATIVES[language])))]
        image = object_picture(icon, colour, side, rng)
        call, api = NoCall(colour if kind == "colour" else REFUSAL[language]), None
    else:
        api = registry().names[int(rng.integers(len(registry())))]
        image, args, fields = _example(api, rng, side, split)
        templates = TEMPLATES[api][language]
        request = templates[int(rng.integers(len(templates)))].format(**fields)
        call = FunctionCall(api, args)
    target = format_call(call, registry(), style)
    return Sample(
        [Message("user", f"<image>\n{request}"), Message("assistant", target)],
        [image],
        meta={
            "api": api,
            "call": call.to_json(),
            "language": language,
            "split": split,
            "answer": target,
            "style": style,
            "request": request,
            "image": image,
        },
    )


def corpus_characters() -> str:
    """Every character the corpus's requests and answers use (for a character-level tokenizer)."""
    texts = [t for api in TEMPLATES.values() for lang in api.values() for t in lang]
    texts += [r for lang in NEGATIVES.values() for r, _ in lang] + list(REFUSAL.values())
    texts += [*TOPIC_ZH.values(), *MESSAGE_ZH.values(), *STYLE_ZH.values(), *SIZE_ZH.values()]
    return "".join(sorted(set("".join(texts))))


def _register() -> None:
    for split in SPLITS:
        for style, prefix in (("token", "agent"), ("text", "agent_text")):
            name = f"{prefix}_{split}"
            if name not in TASKS:
                register_task(name)(functools.partial(agent_sample, split=split, style=style))


_register()
