"""Vision data: digits split by sample, scenes with gold answers on held-out layouts, the user's JSONL
(every bad line named), and the rendering that expands each `<image>` marker into the placeholders."""

import json

import numpy as np
import pytest

from minigpt.data.vision.datamodule import VisionChatDataModule, encode_vision_example
from minigpt.data.vision.digits import Digits
from minigpt.data.vision.example import VisionExample, user_turn
from minigpt.data.vision.jsonl import ImageChatFile
from minigpt.data.vision.shapes import COLOURS, Shapes, Thing, all_layouts, draw, layout, questions
from minigpt.tokenizer.char import CharTokenizer
from minigpt.tokenizer.chat import IMAGE_TOKEN
from minigpt.utils.errors import ConfigError, DataError


def test_digit_splits_are_disjoint_and_cover_every_image():
    digits = Digits()
    parts = [set(digits.split_indices(s).tolist()) for s in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(set.union(*parts)) == 1797
    example = digits.examples("test", 1, 24)[0]
    assert example.images[0].shape == (3, 24, 24) and example.answer in "0123456789"
    assert example.question == "what digit is this?"


def test_scene_answers_are_read_off_the_scene():
    things = [Thing(0, "red", "circle", 2), Thing(2, "blue", "square", 10)]
    asked = questions(things)
    assert asked["count"] == ("how many shapes?", "2")
    assert asked["colour"] == ("what colour is the circle?", "red")
    assert asked["shape"] == ("what shape is the red one?", "circle")
    assert asked["position"] == ("where is the red circle?", "left")
    image = draw(things, 24)
    # The square fills its box with blue in the right slot; the left slot's pixels are red or black.
    assert np.allclose(image[:, 10 + 3, 16 + 4], COLOURS["blue"])
    assert set(map(tuple, image[:, :, :8].reshape(3, -1).T.tolist())) <= {(0.0, 0.0, 0.0), COLOURS["red"]}


def test_scene_splits_hold_out_layouts_and_repeat_by_seed():
    shapes = Shapes(num_held_out=50)
    test = shapes.examples("test", None, 24)
    assert len(test) == 50
    assert all(np.array_equal(a.images[0], b.images[0]) for a, b in zip(test, shapes.examples("test", None, 24)))
    seen = {s: {layout(t) for t, _ in shapes.split_scenes(s, 300, 24)} for s in ("train", "val", "test")}
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"] and not seen["val"] & seen["test"]
    assert seen["test"] <= shapes.held_out["test"] and seen["val"] <= shapes.held_out["val"]
    # Per object count, 1/6 of all layouts go to val and 1/6 to test: 6 of 36, 72 of 432, 288 of 1,728.
    for count, size in ((1, 36), (2, 432), (3, 1728)):
        assert {len(shapes.held_out[s] & set(all_layouts(count))) for s in ("val", "test")} == {size // 6}
    with pytest.raises(ConfigError, match="held_out_fraction"):
        Shapes(held_out_fraction=0.5)


def test_every_scene_split_keeps_the_generators_object_counts():
    # Splitting by per-count layout fractions leaves P(count) alone; holding out the layouts of random
    # scenes took 33 of the 36 one-shape layouts out of train (5% one-shape train scenes vs 29% in test).
    shapes = Shapes()
    share = {}
    for split in ("train", "val", "test"):
        counts = np.array([len(t) for t, _ in shapes.split_scenes(split, 400, 24)])
        share[split] = np.array([(counts == c).mean() for c in (1, 2, 3)])
        assert share[split][0] > 0.2  # about a third of the scenes show one shape
    assert np.abs(share["train"] - share["test"]).max() < 0.1
    assert np.abs(share["train"] - share["val"]).max() < 0.1


def tokenizer_with_chat() -> CharTokenizer:
    return CharTokenizer.train("0123456789 abcdefghijklmnopqrstuvwxyz?.,")


def test_markers_expand_to_num_tokens_placeholders_and_only_the_reply_trains():
    dm = VisionChatDataModule({"digits": Digits()}, image_size=24, image_tokens=16, seq_len=64, num_val=4)
    tokenizer = tokenizer_with_chat()
    dm.attach_tokenizer(tokenizer)
    example = Digits().examples("val", 1, 24)[0]
    inputs, targets, images, kind = dm.encode(example)
    image_id = tokenizer.special_id(IMAGE_TOKEN)
    first = inputs.index(image_id)
    assert inputs[first : first + 16] == [image_id] * 16 and inputs.count(image_id) == 16
    trained = [t for t in targets if t != -100]
    assert tokenizer.decode(trained) == example.answer + "<|end|>" and kind == "digit" and len(images) == 1
    batch = next(iter(dm.val_dataloader()))
    assert batch["images"].shape == (4, 3, 24, 24) and batch["kinds"] == ["digit"] * 4
    two_markers = VisionExample(example.images, user_turn("and <image>?", "1"), "x")
    with pytest.raises(ConfigError, match="2 <image> markers but 1 images"):
        encode_vision_example(tokenizer, two_markers, 16)


def test_too_long_examples_are_refused_with_the_fix():
    dm = VisionChatDataModule({"digits": Digits()}, image_size=24, image_tokens=16, seq_len=20, num_val=4)
    dm.attach_tokenizer(tokenizer_with_chat())
    with pytest.raises(ConfigError, match="vision.num_tokens"):
        dm.encode(Digits().examples("val", 1, 24)[0])


def write_lines(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_user_jsonl_reads_png_and_npy_and_converts_the_mode(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8), mode="L").save(tmp_path / "white.png")
    np.save(tmp_path / "dark.npy", np.zeros((8, 8, 3), dtype=np.float32))
    chat = [{"role": "user", "content": "<image> colour?"}, {"role": "assistant", "content": "white"}]
    lines = [{"images": ["white.png" if i % 2 else "dark.npy"], "messages": chat, "kind": "colour"} for i in range(10)]
    source = ImageChatFile(str(write_lines(tmp_path / "data.jsonl", lines)))
    splits = {s: source.examples(s, None, 8) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    images = [ex.images[0] for ex in splits["train"]]
    assert all(im.shape == (3, 8, 8) for im in images) and {float(im.max()) for im in images} == {0.0, 1.0}


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"images": ["nowhere.png"]}, "does not exist"),
        ({"images": ["bad.png"]}, "not a readable image"),
        ({"images": ["big.png"]}, "resize it to 8×8"),
        ({"images": []}, "1 <image> markers but 0 images"),
    ],
)
def test_user_jsonl_bad_lines_are_named(tmp_path, record, problem):
    from PIL import Image

    (tmp_path / "bad.png").write_bytes(b"not a png")
    Image.new("RGB", (16, 16)).save(tmp_path / "big.png")
    chat = [{"role": "user", "content": "<image> what?"}, {"role": "assistant", "content": "a"}]
    good = {"images": ["big.png"], "messages": chat}
    path = write_lines(tmp_path / "data.jsonl", [good, good, {**record, "messages": chat}])
    with pytest.raises(DataError, match=f"data.jsonl line (1|3): .*{problem}"):
        ImageChatFile(str(path)).examples("train", None, 16 if problem != "resize it to 8×8" else 8)


def test_two_image_question_compares_two_digits_of_the_same_split():
    from minigpt.data.vision.digits import _digits

    digits = Digits(kinds=["larger"])
    labels = _digits()[1]
    test = set(digits.split_indices("test").tolist())
    partners = digits.partners("test")
    assert set(partners) == test and set(partners.values()) <= test  # never a training image
    assert all(labels[i] != labels[j] for i, j in partners.items())
    example = digits.examples("test", 1, 24)[0]
    assert len(example.images) == 2 and example.messages[0]["content"].count("<image>") == 2
    i = int(digits.split_indices("test")[0])
    assert example.answer == ("first" if labels[i] > labels[partners[i]] else "second")


def test_relation_question_reads_left_of_off_the_slots():
    things = [Thing(0, "red", "triangle", 0), Thing(1, "blue", "circle", 0), Thing(2, "red", "circle", 0)]
    assert "relation" not in questions(things)  # only one shape occurs once
    things = [Thing(0, "red", "triangle", 0), Thing(2, "blue", "circle", 0)]
    assert questions(things)["relation"] == ("is the circle left of the triangle?", "no")
    assert questions(things[::-1])["relation"][1] == "no"  # the slots decide, not the listing order
    things = [Thing(1, "red", "circle", 0), Thing(2, "blue", "square", 0)]
    assert questions(things)["relation"] == ("is the circle left of the square?", "yes")
