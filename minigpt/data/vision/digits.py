"""scikit-learn's handwritten digits (1,797 8×8 greyscale images, Alpaydin & Kaynak 1998, UCI), offline.

Each image is scaled to [0, 1], upscaled by pixel repetition to the encoder's size and repeated over three
channels (so digits and colour scenes share one encoder). Splits are by sample: a seeded permutation puts
80 % in train, 10 % in val and 10 % in test, so every evaluated image is one the model never trained on.

Question types: `digit` ("what digit is this?" → "7"), `caption` ("describe the image." →
"a handwritten 7", the alignment data of LLaVA's stage 1) and `larger` (two images, "which is larger?" →
"first" or "second": a relation between two images; the partner comes from the same split).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

from minigpt.data.vision.example import ImageLabels, VisionExample, check_split, upscale, user_turn
from minigpt.utils.errors import ConfigError

KINDS = {"digit": "what digit is this?", "caption": "describe the image.", "larger": "<image> which is larger?"}


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships with the package: no download

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


class Digits:
    """The digits data set as a `VisionSource`.

    Args:
        kinds: question types to ask, among `digit` and `caption`; each image is asked each of them.
        seed: the split permutation's seed (a fixed data split, independent of the run's seed).
    """

    def __init__(self, kinds: Sequence[str] = ("digit",), seed: int = 0) -> None:
        if not kinds or set(kinds) - set(KINDS):
            raise ConfigError(f"data.sources.digits.kinds={list(kinds)} must be a non-empty subset of {list(KINDS)}.")
        self.kinds, self.seed = list(kinds), seed

    def split_indices(self, split: str) -> np.ndarray:
        """Indices of the images in `split` (train 80 %, val 10 %, test 10 %)."""
        check_split(split)
        n = len(_digits()[1])
        order = np.random.default_rng(self.seed).permutation(n)
        cut1, cut2 = int(0.8 * n), int(0.9 * n)
        return {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}[split]

    def examples(self, split: str, n: int | None, image_size: int) -> list[VisionExample]:
        """Every (image, kind) pair of `split`, image by image, cut to `n`."""
        images, labels = _digits()
        indices = self.split_indices(split)
        partners = self.partners(split) if "larger" in self.kinds else {}

        def rgb(i: int) -> np.ndarray:
            return upscale(np.repeat(images[i][None], 3, axis=0), image_size)

        out = []
        for i in indices:
            for kind in self.kinds:
                if kind == "larger":  # two images: is the first or the second digit the larger one?
                    j = partners[int(i)]
                    answer = "first" if labels[i] > labels[j] else "second"
                    out.append(VisionExample([rgb(i), rgb(j)], user_turn(KINDS[kind], answer), kind))
                    continue
                answer = str(labels[i]) if kind == "digit" else f"a handwritten {labels[i]}"
                out.append(VisionExample([rgb(i)], user_turn(KINDS[kind], answer), kind))
        return out[:n] if n is not None else out

    def partners(self, split: str) -> dict[int, int]:
        """For each image of `split`, a second image of the same split showing another digit (seeded), so
        "which is larger?" always has an answer and both images stay within the split."""
        labels = _digits()[1]
        indices = self.split_indices(split)
        rng = np.random.default_rng((self.seed, 1, ("train", "val", "test").index(split)))
        out = {}
        for i in indices:
            j = int(rng.choice(indices))
            while labels[j] == labels[i]:
                j = int(rng.choice(indices))
            out[int(i)] = j
        return out

    def labelled(self, split: str, n: int | None, image_size: int) -> ImageLabels:
        """The images of `split` with their digit (one head, 10 classes), cut to `n`."""
        images, labels = _digits()
        chosen = self.split_indices(split)[:n]
        upscaled = np.stack([upscale(np.repeat(images[i][None], 3, axis=0), image_size) for i in chosen])
        return ImageLabels(upscaled, labels[chosen][:, None], (10,))
