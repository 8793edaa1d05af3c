"""The zoo's recipes: which network is trained on which data set and classes.

One :class:`Recipe` per model file. ``PAPER`` holds the 23 models of the neuralRank paper's
section 4 (Table 1's nine, their nine *lite* versions, Table 6's five 512-unit versions);
``DEMO`` holds six narrow networks of the same recipe, small enough to ship with the
project. Every recipe is registered once here and everything else loops over the sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nets import Widths

SEED = 0
# epochs per set; models/README.md explains the choice (paper: zoo within ~45 min on 2 cores)
EPOCHS = {"paper": 2, "demo": 3}
BATCH_SIZE = 100
LEARNING_RATE = 1e-3

ALL, LOW, HIGH = (0, 9), (0, 4), (5, 9)
# file-name stem of each data set, and the data set the paper calls it
DATASET_STEMS = {"mnist": "mnist", "fashion-mnist": "fashion", "cifar10-grey": "cifar10"}

ARCHITECTURES = {
    "paper": Widths(conv=(32, 64), dense=1024),
    "lite": Widths(conv=(32,), dense=1024),
    "paper-512": Widths(conv=(32, 64), dense=512),
    "demo": Widths(conv=(8, 16), dense=64),
}
SUFFIXES = {"paper": "", "lite": "-lite", "paper-512": "-512", "demo": ""}


@dataclass(frozen=True)
class Recipe:
    """One model of a zoo: data set, class range (inclusive), architecture and seed.

    Subset models are trained with labels remapped to ``0 .. last-first`` so that their
    logits have one output per trained class.
    """

    dataset: str
    classes: tuple[int, int]
    architecture: str
    seed: int = SEED

    @property
    def name(self) -> str:
        """File stem, e.g. ``mnist-all``, ``fashion-5-9-lite``, ``cifar10-0-4-512``."""
        span = "all" if self.classes == ALL else f"{self.classes[0]}-{self.classes[1]}"
        return f"{DATASET_STEMS[self.dataset]}-{span}{SUFFIXES[self.architecture]}"

    @property
    def class_label(self) -> str:
        """The class range as written in metadata and manifests, e.g. ``0-4``."""
        return f"{self.classes[0]}-{self.classes[1]}"

    @property
    def num_classes(self) -> int:
        return self.classes[1] - self.classes[0] + 1

    @property
    def widths(self) -> Widths:
        return ARCHITECTURES[self.architecture]


def _table(datasets, spans, architecture):
    return [Recipe(d, s, architecture) for d in datasets for s in spans]


_ALL_DATASETS = ("mnist", "fashion-mnist", "cifar10-grey")

PAPER: list[Recipe] = (
    _table(_ALL_DATASETS, (ALL, LOW, HIGH), "paper")              # Table 1
    + _table(_ALL_DATASETS, (ALL, LOW, HIGH), "lite")             # Table 5
    + _table(["fashion-mnist"], (ALL, LOW), "paper-512")          # Table 6
    + _table(["cifar10-grey"], (ALL, LOW, HIGH), "paper-512")
)

DEMO: list[Recipe] = [
    Recipe("mnist", ALL, "demo"),
    Recipe("mnist", HIGH, "demo"),
    Recipe("fashion-mnist", ALL, "demo"),
    Recipe("fashion-mnist", LOW, "demo"),
    Recipe("cifar10-grey", ALL, "demo"),
    Recipe("cifar10-grey", LOW, "demo"),
]

SETS: dict[str, list[Recipe]] = {"paper": PAPER, "demo": DEMO}
