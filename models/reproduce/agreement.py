"""Agreement between scores and accuracies over a set of models, with intervals.

Built on :mod:`zooindex.transfer`: per-image correctness from the measured records goes
into bootstraps over test images, and the extra-seed models into intervals over training
seeds. Each function returns plain numbers and :class:`zooindex.transfer.Interval` s;
the table modules turn them into markdown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .paper import EXTRA_SEEDS, seeded

DRAWS = 2000


@dataclass
class Agreement:
    """Kendall's tau and weighted tau of scores against one variant's accuracies."""

    models: list
    variant: str
    tau: object                  # Interval over test images (score fixed)
    tau_w: object
    tau_scored: object = None    # Interval over test images, the score resampled too
    tau_seeds: object = None     # Interval over training seeds (one seed per model)
    tau_seeds_images: object = None  # both: seeds and test images
    seeds: tuple = ()


def correctness(records: dict, models: list, variant: str, test_y) -> np.ndarray:
    """``(m, n)`` bool: model i right on test image j under ``variant``."""
    return np.array([records[m].correct(variant, test_y) for m in models])


def accuracies(records: dict, models: list, variant: str, test_y) -> dict:
    return {m: records[m].accuracy(variant, test_y) for m in models if m in records}


def scores(records: dict, models: list) -> dict:
    return {m: records[m].score for m in models if m in records}


def agreement(records: dict, models: list, variant: str, test_y, *, draws: int = DRAWS,
              seed: int = 0) -> Agreement | None:
    """Agreement over the ``models`` present in ``records``, intervals over test images.

    Where every model also exists trained from the extra seeds, adds intervals over seeds
    (one of the three networks of each model drawn per resample: its score and its
    accuracy together) and over seeds and test images at once.
    """
    from zooindex.transfer import bootstrap_tau, seed_bootstrap_tau, seed_tau

    present = [m for m in models if m in records and variant in records[m].predictions]
    if len(present) < 3:
        return None
    s = np.array([records[m].score for m in present])
    correct = correctness(records, present, variant, test_y)
    samples = np.array([records[m].samples for m in present])
    result = Agreement(
        present, variant,
        tau=bootstrap_tau(s, correct, draws=draws, seed=seed),
        tau_w=bootstrap_tau(s, correct, statistic="tau_w", draws=draws, seed=seed),
        tau_scored=bootstrap_tau(s, correct, draws=draws, seed=seed, score_samples=samples))
    runs = [[seeded(m, k) for k in (0, *EXTRA_SEEDS)] for m in present]
    if all(r in records and variant in records[r].predictions for row in runs for r in row):
        seed_scores = np.array([[records[r].score for r in row] for row in runs])
        seed_correct = np.array([[records[r].correct(variant, test_y) for r in row]
                                 for row in runs])
        result.tau_seeds = seed_tau(seed_scores, seed_correct.mean(axis=2), draws=draws,
                                    seed=seed)
        result.tau_seeds_images = seed_bootstrap_tau(seed_scores, seed_correct, draws=draws,
                                                     seed=seed)
        result.seeds = (0, *EXTRA_SEEDS)
    return result


def logits_seed_interval(records: dict, models: list, variants: list[str], test_y, *,
                         draws: int = DRAWS, seed: int = 0):
    """Tau over seeds of the logits retraining alone: the models and scores fixed."""
    from zooindex.transfer import seed_tau

    present = [m for m in models if m in records
               and all(v in records[m].predictions for v in variants)]
    if len(present) < 3:
        return None
    accs = np.array([[records[m].accuracy(v, test_y) for v in variants] for m in present])
    return seed_tau([records[m].score for m in present], accs, draws=draws, seed=seed)


def top_k_share(records: dict, models: list, variant: str, test_y, k: int, *,
                draws: int = DRAWS, seed: int = 0) -> tuple[bool, float] | None:
    """Whether the top ``k`` by score are the top ``k`` by accuracy, and in what share of
    test-image resamples they are (a set claim such as Table 6's "top-5 are top-5")."""
    from zooindex.transfer import resampled_means

    present = [m for m in models if m in records and variant in records[m].predictions]
    if len(present) <= k:
        return None
    s = np.array([records[m].score for m in present])
    top = set(np.argsort(-s)[:k])
    correct = correctness(records, present, variant, test_y)
    point = set(np.argsort(-correct.mean(axis=1), kind="stable")[:k]) == top
    accs = resampled_means(correct, draws=draws, seed=seed)
    share = float(np.mean([set(np.argsort(-a, kind="stable")[:k]) == top for a in accs]))
    return point, share
