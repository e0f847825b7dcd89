"""A scene generator: coloured shapes on a black canvas, drawn with numpy, every question with a gold answer.

A scene puts 1-3 objects in distinct slots of a row (left, middle, right), each a filled square, circle or
triangle in red, green, blue or yellow, at a random height. A scene's *layout* is the slot, colour and
shape of every object (heights aside); there are 36 one-shape, 432 two-shape and 1,728 three-shape layouts.

Splits are by layout, like splitting a text benchmark by template: for each object count, a seeded
permutation of all its layouts gives a fixed fraction to val, the next as many to test and the rest to
train; each split draws scenes from the generator (seed (seed, split, i) for scene i) and keeps only those
whose layout is its own. Evaluation is then on layouts never seen in training, *and* every split keeps the
generator's distribution of object counts. (Holding out the layouts of 200 random val and 200 random test
scenes instead took 33 of the 36 one-shape layouts out of training, leaving 5% one-shape training scenes
against 29% in test, and the model answered "2" to most one-shape test scenes.)

Question types (one per scene, chosen among those that have a unique answer):
* `count`    "how many shapes?" → "2"
* `colour`   "what colour is the circle?" → "red"            (the shape occurs once)
* `shape`    "what shape is the red one?" → "circle"         (the colour occurs once)
* `position` "where is the red circle?" → "left"             (left / middle / right)
* `caption`  "describe the image." → "red circle, blue square" (objects left to right)
* `relation` "is the circle left of the square?" → "yes" / "no"  (two shapes that occur once each; the
  pair is named in alphabetical order, so by the symmetry of random layouts each answer has odds 1/2)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from minigpt.data.vision.example import SPLITS, ImageLabels, VisionExample, check_split, user_turn
from minigpt.utils.errors import ConfigError

COLOURS = {"red": (1.0, 0.0, 0.0), "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0)}
SHAPES = ("square", "circle", "triangle")
SLOTS = ("left", "middle", "right")
KINDS = ("count", "colour", "shape", "position", "caption", "relation")


@dataclass(frozen=True)
class Thing:
    """One object of a scene."""

    slot: int
    colour: str
    shape: str
    top: int


def shape_mask(shape: str, size: int) -> np.ndarray:
    """A boolean size×size mask of a filled square, circle (disk) or triangle (apex up)."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        return (x - size / 2) ** 2 + (y - size / 2) ** 2 <= (size / 2) ** 2
    return np.abs(x - size / 2) <= y / 2  # triangle: half-width grows linearly from the apex at the top


def draw(things: Sequence[Thing], image_size: int) -> np.ndarray:
    """The scene as a (3, image_size, image_size) float32 image; each slot is image_size / 3 wide."""
    canvas = np.zeros((3, image_size, image_size), dtype=np.float32)
    cell = image_size // 3
    size = cell - 2  # one pixel of margin each side keeps neighbours apart
    for thing in things:
        mask = shape_mask(thing.shape, size)
        left = thing.slot * cell + 1
        region = canvas[:, thing.top : thing.top + size, left : left + size]
        region[:, mask] = np.asarray(COLOURS[thing.colour], dtype=np.float32)[:, None]
    return canvas


def random_scene(rng: np.random.Generator, image_size: int) -> list[Thing]:
    """1-3 objects in distinct slots, listed left to right."""
    size = image_size // 3 - 2
    slots = sorted(rng.choice(3, size=int(rng.integers(1, 4)), replace=False))
    return [
        Thing(
            int(s), str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)), int(rng.integers(0, image_size - size + 1))
        )
        for s in slots
    ]


Layout = tuple[tuple[int, str, str], ...]


def layout(things: Sequence[Thing]) -> Layout:
    """What a scene shows, ignoring heights: the key that keeps evaluation layouts out of training."""
    return tuple((t.slot, t.colour, t.shape) for t in things)


def all_layouts(count: int) -> list[Layout]:
    """Every layout of `count` objects (objects left to right, as `random_scene` lists them), in a fixed order."""
    objects = list(itertools.product(COLOURS, SHAPES))
    return [
        tuple((slot, colour, shape) for slot, (colour, shape) in zip(slots, objs))
        for slots in itertools.combinations(range(len(SLOTS)), count)
        for objs in itertools.product(objects, repeat=count)
    ]


SLOT_CLASSES = 1 + len(COLOURS) * len(SHAPES)  # empty, or one (colour, shape)


def slot_classes(things: Sequence[Thing]) -> list[int]:
    """Each slot's class, left to right: 0 if empty, else 1 + colour index · 3 + shape index. Every
    question about the scene (count, colour, shape, position, caption) is a function of these three."""
    out = [0, 0, 0]
    for t in things:
        out[t.slot] = 1 + list(COLOURS).index(t.colour) * len(SHAPES) + SHAPES.index(t.shape)
    return out


def questions(things: Sequence[Thing]) -> dict[str, tuple[str, str]]:
    """{kind: (question, answer)} for every kind with a unique answer in this scene."""
    out = {"count": ("how many shapes?", str(len(things)))}
    shapes = [t.shape for t in things]
    colours = [t.colour for t in things]
    for t in things:
        if shapes.count(t.shape) == 1:
            out.setdefault("colour", (f"what colour is the {t.shape}?", t.colour))
        if colours.count(t.colour) == 1:
            out.setdefault("shape", (f"what shape is the {t.colour} one?", t.shape))
        if sum(1 for u in things if (u.colour, u.shape) == (t.colour, t.shape)) == 1:
            out.setdefault("position", (f"where is the {t.colour} {t.shape}?", SLOTS[t.slot]))
    out["caption"] = ("describe the image.", ", ".join(f"{t.colour} {t.shape}" for t in things))
    unique = sorted(t.shape for t in things if shapes.count(t.shape) == 1)
    if len(unique) >= 2:
        first, second = (next(t.slot for t in things if t.shape == s) for s in unique[:2])
        out["relation"] = (f"is the {unique[0]} left of the {unique[1]}?", "yes" if first < second else "no")
    return out


class Shapes:
    """The scene generator as a `VisionSource`.

    Args:
        kinds: question types to draw from (each scene asks one of those it has a unique answer for).
        num_held_out: the default number of val / test scenes.
        held_out_fraction: the fraction of the layouts of each object count that val gets, and test as many
            (the default 1/6 is exact for all three counts: 6 of 36, 72 of 432, 288 of 1,728).
        seed: the generator's seed (fixed data, independent of the run's seed).
    """

    def __init__(
        self, kinds: Sequence[str] = KINDS[:4], num_held_out: int = 200, held_out_fraction: float = 1 / 6, seed: int = 0
    ) -> None:
        if not kinds or set(kinds) - set(KINDS):
            raise ConfigError(f"data.sources.shapes.kinds={list(kinds)} must be a non-empty subset of {list(KINDS)}.")
        if not 0 < held_out_fraction < 0.45:
            raise ConfigError(
                f"data.sources.shapes.held_out_fraction={held_out_fraction} must be in (0, 0.45): val and test "
                "each take that fraction of the layouts and train needs the rest; 1/6 is the default."
            )
        self.kinds, self.num_held_out, self.seed = list(kinds), num_held_out, seed
        self.held_out_fraction = held_out_fraction

    @cached_property
    def held_out(self) -> dict[str, frozenset[Layout]]:
        """{"val": layouts, "test": layouts}: per object count, the first `held_out_fraction` of a seeded
        permutation of its layouts go to val and the next as many to test (at least one each). The same
        fraction of every count keeps each split's share of one-, two- and three-shape scenes."""
        out: dict[str, set[Layout]] = {"val": set(), "test": set()}
        for count in range(1, len(SLOTS) + 1):
            layouts = all_layouts(count)
            order = np.random.default_rng((self.seed, count)).permutation(len(layouts))
            k = max(1, round(self.held_out_fraction * len(layouts)))
            out["val"].update(layouts[i] for i in order[:k])
            out["test"].update(layouts[i] for i in order[k : 2 * k])
        return {split: frozenset(layouts) for split, layouts in out.items()}

    def owns(self, split: str) -> Callable[[Layout], bool]:
        """Whether a layout belongs to `split`: val and test own theirs, train every other one."""
        if split == "train":
            return lambda lay: lay not in self.held_out["val"] and lay not in self.held_out["test"]
        return self.held_out[split].__contains__

    def _scenes(self, split: str, n: int, image_size: int) -> list[tuple[list[Thing], str]]:
        """`n` (scene, kind) pairs of `split`: scenes from seeds (seed, split, i) for i = 0, 1, … whose
        layout the split owns."""
        owns = self.owns(split)
        out: list[tuple[list[Thing], str]] = []
        i = 0
        while len(out) < n:
            rng = np.random.default_rng((self.seed, SPLITS.index(split), i))
            i += 1
            things = random_scene(rng, image_size)
            if not owns(layout(things)):
                continue
            asked = [k for k in self.kinds if k in questions(things)]
            if asked:
                out.append((things, str(rng.choice(asked))))
        return out

    def split_scenes(self, split: str, n: int | None, image_size: int) -> list[tuple[list[Thing], str]]:
        """`n` (scene, kind) pairs of `split` (default: `num_held_out`), on the split's own layouts."""
        check_split(split)
        return self._scenes(split, self.num_held_out if n is None else n, image_size)

    def examples(self, split: str, n: int | None, image_size: int) -> list[VisionExample]:
        """`n` scenes of `split` (default: `num_held_out`), each with one question."""
        out = []
        for things, kind in self.split_scenes(split, n, image_size):
            question, answer = questions(things)[kind]
            out.append(VisionExample([draw(things, image_size)], user_turn(question, answer), kind))
        return out

    def labelled(self, split: str, n: int | None, image_size: int) -> ImageLabels:
        """The scenes of `split` labelled slot by slot: one head per slot, 13 classes (`slot_classes`)."""
        scenes = [things for things, _ in self.split_scenes(split, n, image_size)]
        images = np.stack([draw(things, image_size) for things in scenes])
        return ImageLabels(images, np.array([slot_classes(t) for t in scenes], dtype=np.int64), (SLOT_CLASSES,) * 3)
