"""Ground truth for a ranking: the real transfer accuracy of every model.

The paper's transfer protocol freezes every layer but the logits, retrains the logits on
the target's training split and measures accuracy on its test split. On frozen features
that is multinomial logistic regression on the last hidden dense layer, which is what
runs here (features standardised first: an affine change the linear layer absorbs, done
so that the solver converges in a bounded number of iterations).

``evaluate`` then compares each estimator's ranking with the accuracy ranking: Kendall's
tau, weighted tau (``scipy.stats.weightedtau``, the field's standard, which weighs the top
of the ranking most), Spearman's rho, and the accuracy of the top-ranked model relative
to the best one.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import SplitError, TargetError, ZooIndexError
from .index import opened
from .options import SearchOptions, TargetSelection, from_settings
from .ranking import Result, activations, search
from .readers import Dataset
from .target import Target, load_target


@dataclass
class ModelEvaluation:
    model: str
    layer: str | None
    scores: dict
    accuracy: float | None
    seconds: float                      # retraining the logits (features + regression)
    timings: dict = field(default_factory=dict)  # estimator -> seconds
    status: str = "ok"
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Evaluation:
    train: str
    test: str
    scorers: list
    models: list
    agreement: dict = field(default_factory=dict)   # scorer -> {tau_w, tau, spearman, top1, seconds}
    search_seconds: float = 0.0
    transfer_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"train": self.train, "test": self.test, "scorers": self.scorers,
                "models": [m.to_dict() for m in self.models], "agreement": self.agreement,
                "search_seconds": self.search_seconds,
                "transfer_seconds": self.transfer_seconds}


def transfer_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                      test_y: np.ndarray, *, seed: int = 0, max_iter: int = 300) -> float:
    """Accuracy on the test split of a linear classifier retrained on frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter,
                                                             random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter: accuracy still valid
        clf.fit(train_x, train_y)
    return float(np.mean(clf.predict(test_x) == test_y))


def rank_agreement(scores, accuracies) -> dict:
    """How well ``scores`` rank models like ``accuracies`` (higher is better for both)."""
    from scipy import stats

    s = np.asarray(scores, dtype=np.float64)
    a = np.asarray(accuracies, dtype=np.float64)
    if len(s) < 2:
        return {"tau_w": None, "tau": None, "spearman": None, "top1": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: correlation undefined -> nan
        tau_w = stats.weightedtau(s, a).statistic
        tau = stats.kendalltau(s, a).statistic
        rho = stats.spearmanr(s, a).statistic
    top = int(np.argmax(s))
    return {"tau_w": _num(tau_w), "tau": _num(tau), "spearman": _num(rho),
            "top1": float(a[top] / a.max()) if a.max() > 0 else None}


def _num(x) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def _split(target, test_size: float, seed: int, classes, split) -> tuple[Target, Target]:
    from sklearn.model_selection import train_test_split

    full = load_target(target, classes=classes, split=split)
    if not full.labeled:
        raise TargetError(f"target {full.source} has no labels; measuring transfer "
                          "accuracy needs them")
    idx = np.arange(len(full.y))
    tr, te = train_test_split(idx, test_size=test_size, stratify=full.y, random_state=seed)
    tr.sort(); te.sort()
    labels = np.asarray(full.classes, dtype=object)

    def part(rows, tag):
        return load_target(Dataset(x=full.x[rows], y=labels[full.y[rows]], class_names=None,
                                   source=f"{full.source} [{tag}]"))

    return part(tr, "train"), part(te, "test")


def _load_part(source, split: str, **options) -> Target:
    """``split`` of a data set that has splits; the whole file when it has none."""
    if isinstance(source, Target):
        return source
    try:
        return load_target(source, split=split, **options)
    except SplitError as exc:
        if exc.available:
            raise
        return load_target(source, **options)


def evaluate(*, train=None, test=None, target=None, test_size: float | None = None,
             options: SearchOptions | None = None, index=None,
             selection: TargetSelection | None = None, train_limit: int | None = None,
             models=None, progress: bool | None = False, executor=None,
             **settings) -> Evaluation:
    """Score every model on the test split and measure its real transfer accuracy.

    Give ``train`` and ``test`` (paths or targets), or one ``target`` with ``test_size``.
    Scores come from :func:`zooindex.search` on the test split (cached like any search),
    with ``options`` and the test split's ``selection`` (or their fields as keywords:
    ``scorers=``, ``dim=``, ``classes=``, ``limit=``, ...); ``train_limit`` subsamples the
    training split. Accuracy comes from a linear classifier retrained on the training
    split's features.
    """
    options, selection = from_settings(options, selection, **settings)
    seed, classes = selection.seed, selection.classes
    classes = list(classes) if classes is not None else None
    if target is not None:
        if train is not None or test is not None:
            raise ZooIndexError("give either --train and --test, or one target with "
                                "--test-size, not both")
        if not test_size or not 0 < test_size < 1:
            raise ZooIndexError("one target needs --test-size between 0 and 1, e.g. 0.3")
        train_t, test_t = _split(target, test_size, seed, classes, None)
    else:
        if train is None or test is None:
            raise ZooIndexError("evaluate needs --train and --test (or one target with "
                                "--test-size)")
        train_t = _load_part(train, "train", classes=classes, limit=train_limit, seed=seed)
        test_t = _load_part(test, "test", classes=classes, limit=selection.limit, seed=seed)
    for part in (train_t, test_t):
        if not part.labeled:
            raise TargetError(f"target {part.source} has no labels; measuring transfer "
                              "accuracy needs them")
    if set(map(str, train_t.classes)) != set(map(str, test_t.classes)):
        raise TargetError(f"train and test have different classes: "
                          f"{list(train_t.classes)} vs {list(test_t.classes)}")
    # label codes must mean the same class in both splits
    test_codes = {str(c): i for i, c in enumerate(test_t.classes)}
    train_y = np.array([test_codes[str(train_t.classes[c])] for c in train_t.y])

    t0 = time.perf_counter()
    ranking = search(test_t, options, index=index, models=models, progress=progress,
                     executor=executor)
    search_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    out: list[ModelEvaluation] = []
    with opened(index, create=False) as idx:
        for r in ranking.results:
            out.append(_evaluate_one(idx, r, train_t, train_y, test_t, options, executor))
    transfer_s = time.perf_counter() - t1

    ok = [m for m in out if m.status == "ok"]
    agreement = {}
    for name in ranking.scorers:
        rows = [m for m in ok if name in m.scores]
        ag = rank_agreement([m.scores[name] for m in rows], [m.accuracy for m in rows])
        ag["models"] = len(rows)
        ag["seconds"] = float(sum(m.timings.get(name, 0.0) for m in rows))
        agreement[name] = ag
    ok.sort(key=lambda m: -m.accuracy)
    return Evaluation(train=train_t.source, test=test_t.source, scorers=ranking.scorers,
                      models=ok + [m for m in out if m.status != "ok"], agreement=agreement,
                      search_seconds=search_s, transfer_seconds=transfer_s)


def _evaluate_one(idx, r: Result, train_t, train_y, test_t, options,
                  executor) -> ModelEvaluation:
    if r.status != "ok":
        return ModelEvaluation(r.model, r.layer, {}, None, 0.0, status=r.status,
                               reason=r.reason)
    t = time.perf_counter()
    feats_train = activations(train_t, [r.model], index=idx, layer=r.layer, options=options,
                              executor=executor)[r.model]
    feats_test = activations(test_t, [r.model], index=idx, layer=r.layer, options=options,
                             executor=executor)[r.model]
    acc = transfer_accuracy(feats_train, train_y, feats_test, test_t.y, seed=options.seed)
    return ModelEvaluation(r.model, r.layer, dict(r.scores), acc, time.perf_counter() - t,
                           timings=dict(r.timings))


__all__ = ["evaluate", "transfer_accuracy", "rank_agreement", "Evaluation"]
