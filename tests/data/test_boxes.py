"""data/boxes.py: every notation read, one location per answer, corners normalised, geometry."""

import pytest

from andesvl_jax.data.boxes import (
    Location,
    find_locations,
    first_location,
    format_box,
    format_point,
    gold_box,
    ground,
    iou,
    parse_box,
    parse_boxes,
    parse_point,
    point_in_box,
    to_box_scale,
)


@pytest.mark.parametrize(
    "text, location",
    [
        ("<|box_start|>(100,200),(300,400)<|box_end|>", Location((100, 200, 300, 400), (200, 300))),
        (
            "<|box_start|> ( 100 , 200 ) , ( 300 , 400 ) <|box_end|>",
            Location((100, 200, 300, 400), (200, 300)),
        ),
        ("at (100, 200), (300, 400).", Location((100, 200, 300, 400), (200, 300))),
        ('{"bbox_2d": [100, 200, 300, 400]}', Location((100, 200, 300, 400), (200, 300))),
        ("(300,400),(100,200)", Location((100, 200, 300, 400), (200, 300))),  # reversed corners
        ("[300,200,100,400]", Location((100, 200, 300, 400), (200, 300))),  # mixed
        ("<|box_start|>(150,250)<|box_end|>", Location(None, (150, 250))),
        ("tap (15.5, -2)", Location(None, (15.5, -2))),
        ("[15.5, 20]", Location(None, (15.5, 20))),
        ("nowhere (x, y) [1, 2, 3]", None),
        ("<|box_start|>garbage<|box_end|>", None),
    ],
)
def test_first_location_reads_every_notation(text, location):
    assert first_location(text) == location


def test_first_location_is_leftmost_and_a_box_beats_its_first_corner():
    text = "(5,5) then <|box_start|>(1,2),(3,4)<|box_end|> and [7,8]"
    assert [loc.box for loc in find_locations(text)] == [None, (1, 2, 3, 4), None]
    assert first_location(text) == Location(None, (5, 5))
    assert parse_box(text) == (1, 2, 3, 4) and parse_point(text) == (5, 5)
    assert parse_point("(1,2),(3,4)") is None  # corners of a box are not points
    assert parse_boxes("[1,2,3,4] (8,7),(6,5)") == [(1, 2, 3, 4), (6, 5, 8, 7)]


def test_format_scales_rounds_clips_and_round_trips():
    assert format_box((10, 20, 50, 100), 200, 400) == "<|box_start|>(50,50),(250,250)<|box_end|>"
    assert format_box((300.4, 399.6, 100, 200)) == "<|box_start|>(100,200),(300,400)<|box_end|>"
    assert format_box((-5, 0, 1200, 999.6)) == "<|box_start|>(0,0),(1000,1000)<|box_end|>"
    assert format_point((5, 5), 10, 20) == "<|box_start|>(500,250)<|box_end|>"
    assert to_box_scale((1, 1, 3, 3), 3, 3) == pytest.approx((1000 / 3, 1000 / 3, 1000, 1000))
    box = (12, 34, 560, 780)
    assert parse_box(format_box(box)) == box


def test_geometry():
    assert iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert iou((10, 10, 0, 0), (0, 0, 10, 10)) == 1.0  # corners in either order
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    assert point_in_box((10, 5), (0, 0, 10, 10)) and not point_in_box((10.1, 5), (0, 0, 10, 10))
    assert point_in_box((5, 5), (10, 10, 0, 0))


def test_ground_scores_the_first_location():
    gold = (100, 100, 300, 300)
    shifted = ground("[110,110,310,310]", gold)
    assert shifted.hit and shifted.iou == pytest.approx(190**2 / (2 * 200**2 - 190**2))
    assert ground("(150,150)", gold)[1:] == (True, 0.0)
    assert ground("(50,50) [100,100,300,300]", gold)[1:] == (False, 0.0)
    assert ground("none", gold) == (None, False, 0.0)


def test_gold_box_errors_name_the_caller():
    assert gold_box({"box": [300, 300, 100, 100]}, "m") == (100, 100, 300, 300)
    assert gold_box({"box": "<|box_start|>(1,2),(3,4)<|box_end|>"}, "m") == (1, 2, 3, 4)
    with pytest.raises(KeyError, match="metric 'g' needs sample meta 'box'"):
        gold_box({"answer": "x"}, "metric 'g'")
    with pytest.raises(ValueError, match="reward 'r': sample meta 'box' is not a box"):
        gold_box({"box": "the icon"}, "reward 'r'")
    with pytest.raises(ValueError, match="not a box"):
        gold_box({"box": [1, 2, 3]}, "reward 'r'")
    with pytest.raises(ValueError, match="reward 'r'.*not a box"):
        gold_box({"box": ["a", "b", "c", "d"]}, "reward 'r'")
