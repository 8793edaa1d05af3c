"""Ground truth for a ranking: the real transfer accuracy of every model.

Each model's frozen features (the layer the search scored) on the target's training
split adapt it to the target by one of the protocols of :mod:`zooindex.transfer`:

* ``logits`` (the default, the neuralRank paper's): a fresh logits layer retrained on the
  frozen features, dropout on its input, cross-entropy, plain SGD at lr 0.001;
* ``probe``: standardised features and a logistic regression fitted to convergence.

The accuracy on the test split, and which test images each model got right, are cached
in the index like scores (keyed by the protocol, its parameters and the training split),
so a repeated ``evaluate`` retrains nothing.

``evaluate`` then compares each estimator's ranking with the accuracy ranking: Kendall's
tau, weighted tau (``scipy.stats.weightedtau``, the field's standard, which weighs the top
of the ranking most), Spearman's rho, and the accuracy of the top-ranked model relative
to the best one; tau and weighted tau come with 95% bootstrap intervals over the test
images (every model's accuracy recomputed on the same resampled images).
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
    cached: bool = False                # the accuracy came from the index
    correct: np.ndarray | None = field(default=None, repr=False)  # per test image

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("correct")
        return d



@dataclass
class Evaluation:
    train: str
    test: str
    scorers: list
    models: list
    # scorer -> {tau_w, tau, spearman, top1, tau_w_interval, tau_interval, models, seconds}
    agreement: dict = field(default_factory=dict)
    search_seconds: float = 0.0
    transfer_seconds: float = 0.0
    protocol: str = "logits"
    protocol_params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"train": self.train, "test": self.test, "scorers": self.scorers,
                "protocol": self.protocol, "protocol_params": self.protocol_params,
                "models": [m.to_dict() for m in self.models], "agreement": self.agreement,
                "search_seconds": self.search_seconds,
                "transfer_seconds": self.transfer_seconds}


def transfer_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                      test_y: np.ndarray, *, protocol: str = "probe", **params) -> float:
    """Accuracy on the test split of ``protocol`` (see :mod:`zooindex.transfer`) retrained
    on frozen features."""
    from .transfer import PROTOCOLS

    return PROTOCOLS[protocol].accuracy(train_x, train_y, test_x, test_y, **params)


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
             protocol: str = "logits", protocol_params: dict | None = None,
             **settings) -> Evaluation:
    """Score every model on the test split and measure its real transfer accuracy.

    Give ``train`` and ``test`` (paths or targets), or one ``target`` with ``test_size``.
    Scores come from :func:`zooindex.search` on the test split (cached like any search),
    with ``options`` and the test split's ``selection`` (or their fields as keywords:
    ``scorers=``, ``dim=``, ``classes=``, ``limit=``, ...); ``train_limit`` subsamples the
    training split. Accuracy comes from ``protocol`` (``logits``, the paper's, or
    ``probe``; see :mod:`zooindex.transfer`) retrained on the training split's features,
    with ``protocol_params`` overriding its defaults (e.g. ``{"epochs": 5}``); the seed is
    the search's.
    """
    from .transfer import PROTOCOLS

    if protocol not in PROTOCOLS:
        raise ZooIndexError(f"unknown protocol '{protocol}'; choose from: "
                            f"{', '.join(PROTOCOLS)}")
    options, selection = from_settings(options, selection, **settings)
    try:
        params = PROTOCOLS[protocol].resolve(**{"seed": options.seed,
                                                **(protocol_params or {})})
    except ValueError as exc:
        raise ZooIndexError(str(exc)) from None
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
    transfer = _Transfer(protocol, params, train_t, train_y, test_t, options, executor)
    with opened(index, create=False) as idx:
        for r in ranking.results:
            out.append(transfer.evaluate(idx, r))
    transfer_s = time.perf_counter() - t1

    ok = [m for m in out if m.status == "ok"]
    agreement = {}
    for name in ranking.scorers:
        rows = [m for m in ok if name in m.scores]
        ag = rank_agreement([m.scores[name] for m in rows], [m.accuracy for m in rows])
        ag.update(_intervals(rows, name, options.seed))
        ag["models"] = len(rows)
        ag["seconds"] = float(sum(m.timings.get(name, 0.0) for m in rows))
        agreement[name] = ag
    ok.sort(key=lambda m: -m.accuracy)
    return Evaluation(train=train_t.source, test=test_t.source, scorers=ranking.scorers,
                      models=ok + [m for m in out if m.status != "ok"], agreement=agreement,
                      search_seconds=search_s, transfer_seconds=transfer_s,
                      protocol=protocol, protocol_params=params)


def _intervals(rows, name: str, seed: int) -> dict:
    """95% bootstrap intervals over the test images of tau and weighted tau."""
    from .transfer import bootstrap_tau

    if len(rows) < 3 or any(m.correct is None for m in rows):
        return {"tau_interval": None, "tau_w_interval": None}
    scores = [m.scores[name] for m in rows]
    correct = np.stack([m.correct for m in rows])
    out = {}
    for statistic in ("tau", "tau_w"):
        interval = bootstrap_tau(scores, correct, statistic=statistic, draws=1000, seed=seed)
        out[f"{statistic}_interval"] = None if interval.low is None else \
            [interval.low, interval.high]
    return out


@dataclass
class _Transfer:
    """One protocol with its parameters, applied model by model, through the cache."""

    protocol: str
    params: dict
    train_t: Target
    train_y: np.ndarray
    test_t: Target
    options: SearchOptions
    executor: object

    @property
    def name(self) -> str:
        return f"accuracy:{self.protocol}"

    def key(self) -> str:
        import json

        return json.dumps({**self.params, "train": self.train_t.key}, sort_keys=True)

    def correct_layer(self, layer: str) -> str:
        """The cache key of which test images were right, beside the layer's entries."""
        import hashlib

        digest = hashlib.sha256(f"{self.name}\0{self.key()}\0{layer}".encode()).hexdigest()
        return f"::correct::{digest[:24]}"

    def evaluate(self, idx, r: Result) -> ModelEvaluation:
        if r.status != "ok":
            return ModelEvaluation(r.model, r.layer, {}, None, 0.0, status=r.status,
                                   reason=r.reason)
        from .adapt import Preprocessing
        from .transfer import PROTOCOLS

        record = idx.catalogue.get_model(r.model)
        prep = Preprocessing.from_dict(record.preprocessing).key()
        test_key = self.test_t.key
        cached = idx.cache.get_scores(record.sha256, r.layer, test_key, prep)
        hit = cached.get((self.name, self.key()))
        correct = idx.cache.get_activations(record.sha256, self.correct_layer(r.layer),
                                            test_key, prep)
        if hit is not None and correct is not None:
            return ModelEvaluation(r.model, r.layer, dict(r.scores), hit[0], 0.0,
                                   timings=dict(r.timings), cached=True,
                                   correct=correct.reshape(-1).astype(bool))
        t = time.perf_counter()
        feats_train = activations(self.train_t, [r.model], index=idx, layer=r.layer,
                                  options=self.options, executor=self.executor)[r.model]
        feats_test = activations(self.test_t, [r.model], index=idx, layer=r.layer,
                                 options=self.options, executor=self.executor)[r.model]
        right = PROTOCOLS[self.protocol].correct(feats_train, self.train_y, feats_test,
                                                 self.test_t.y, **self.params)
        acc = float(np.mean(right))
        seconds = time.perf_counter() - t
        idx.cache.put_scores(record.sha256, r.layer, test_key, prep,
                             [(self.name, self.key(), acc, None, seconds)])
        idx.cache.put_activations(record.sha256, self.correct_layer(r.layer), test_key, prep,
                                  right.astype(np.float32)[:, None])
        return ModelEvaluation(r.model, r.layer, dict(r.scores), acc, seconds,
                               timings=dict(r.timings), correct=right)


__all__ = ["evaluate", "transfer_accuracy", "rank_agreement", "Evaluation"]
