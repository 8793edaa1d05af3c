"""The zoo's recipes: which network is trained on which data set and classes.

One :class:`Recipe` per model file. ``PAPER`` holds the 23 models of the neuralRank paper's
section 4 (Table 1's nine, their nine *lite* versions, Table 6's five 512-unit versions);
``SEEDS`` holds Table 1's nine again, trained from other seeds (how much of a result is
the luck of one training run); ``DEMO`` holds six narrow networks of the same recipe,
small enough to ship with the project. Every recipe is registered once here and
everything else loops over the sets. :data:`TRAINING` says how each set is trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from .nets import Widths

SEED = 0
PAPER_EPOCHS = 6
BATCH_SIZE = 100
LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class Training:
    """How a network is trained: optimizer, learning rate, batch size and epochs.

    The paper states the learning rate (0.001), the loss (cross-entropy) and the dropout
    (0.4), nothing else; models/README.md says where the rest comes from.
    """

    optimizer: str = "adam"
    lr: float = LEARNING_RATE
    batch_size: int = BATCH_SIZE
    epochs: int = 1

    def steps(self, samples: int) -> int:
        """Optimizer steps for ``samples`` training images: every epoch sees them all."""
        return self.epochs * -(-samples // self.batch_size)


# the recipe of each set; models/README.md gives the measurements behind the choice
TRAINING = {
    "paper": Training("adam", LEARNING_RATE, BATCH_SIZE, epochs=PAPER_EPOCHS),
    "seeds": Training("adam", LEARNING_RATE, BATCH_SIZE, epochs=PAPER_EPOCHS),
    "demo": Training("adam", LEARNING_RATE, BATCH_SIZE, epochs=3),
}
EPOCHS = {name: t.epochs for name, t in TRAINING.items()}

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
        """File stem, e.g. ``mnist-all``, ``fashion-5-9-lite``, ``cifar10-0-4-512``.

        A seed other than the default adds ``-seed<n>``: ``mnist-all-seed1``.
        """
        span = "all" if self.classes == ALL else f"{self.classes[0]}-{self.classes[1]}"
        seed = "" if self.seed == SEED else f"-seed{self.seed}"
        return f"{DATASET_STEMS[self.dataset]}-{span}{SUFFIXES[self.architecture]}{seed}"

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

# Table 1's nine from two more seeds: three training runs of each with the default one
EXTRA_SEEDS = (1, 2)
SEEDS: list[Recipe] = [Recipe(r.dataset, r.classes, r.architecture, seed)
                       for seed in EXTRA_SEEDS for r in PAPER if r.architecture == "paper"]

DEMO: list[Recipe] = [
    Recipe("mnist", ALL, "demo"),
    Recipe("mnist", HIGH, "demo"),
    Recipe("fashion-mnist", ALL, "demo"),
    Recipe("fashion-mnist", LOW, "demo"),
    Recipe("cifar10-grey", ALL, "demo"),
    Recipe("cifar10-grey", LOW, "demo"),
]

SETS: dict[str, list[Recipe]] = {"paper": PAPER, "seeds": SEEDS, "demo": DEMO}
