"""Which transferability estimator ranks the zoo best? Every registered one, on six targets.

    python benchmarks/bench_estimators.py [--zoo models/zoo] [--data DIR] [--models paper|all]
                                          [--limit 1000] [--train-limit 2000] [--scorers ...]

For each target (MNIST, Fashion-MNIST and CIFAR-10 grey, classes 0-4 and 5-9) it runs
``zooindex.evaluate`` over the zoo's models: every estimator's score on the test split and
the real transfer accuracy (logits retrained on frozen features). Each estimator's ranking
is compared with the accuracy ranking by weighted Kendall tau; so are two baselines that
never look at the target: the parameter count, and each model's accuracy on its own
training task. Writes benchmarks/ESTIMATORS-paper-nine.md: a quick check on the paper's
models through ``zooindex.evaluate``. The evidence that decides the recommended scorers,
on a larger and more varied zoo with intervals, is ``bench_evidence.py`` (ESTIMATORS.md).

Measurements are kept per model and target in ``models/.cache/`` (see
``models.reproduce.Measurements``), so a run after more of the zoo is trained measures only
the new models.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from _results import machine  # noqa: E402
from models.reproduce import (DEFAULT_CACHE, DEFAULT_DATA, DEFAULT_ZOO, HIGH, LITE, LOW,  # noqa: E402
                              NINE, WIDE_512, Measurements, available_models, correlation,
                              evaluate_models, markdown_table, source_accuracy)

OUT = Path(__file__).with_name("ESTIMATORS-paper-nine.md")
TARGETS = [("MNIST 0-4", "mnist", LOW), ("MNIST 5-9", "mnist", HIGH),
           ("Fashion 0-4", "fashion", LOW), ("Fashion 5-9", "fashion", HIGH),
           ("CIFAR-10 grey 0-4", "cifar10", LOW), ("CIFAR-10 grey 5-9", "cifar10", HIGH)]
# the cross-validated linear probe is the ground truth measured again, at ~100 s per model
# on 2,000 samples here; left out unless asked for
SLOW = ("linear",)
BASELINES = {"parameter count": "params", "source-task accuracy": "source_accuracy"}


def cifar_grey_npz(data_dir, cache_dir=DEFAULT_CACHE) -> Path:
    """CIFAR-10 as the zoo saw it (28x28 grey), both splits in one npz in the cache."""
    from models.data import load

    path = Path(cache_dir) / "cifar10-grey-28-splits.npz"
    if not path.exists():
        train, test = (load("cifar10-grey", s, data_dir, cache_dir) for s in ("train", "test"))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x_train=train.x, y_train=train.y, x_test=test.x, y_test=test.y)
        tmp.replace(path)
    return path


def sources(data_dir) -> dict[str, str]:
    data_dir = Path(data_dir)
    return {"mnist": str(data_dir / "mnist"), "fashion": str(data_dir / "fashion-mnist"),
            "cifar10": str(cifar_grey_npz(data_dir))}


def run(zoo=DEFAULT_ZOO, data=DEFAULT_DATA, *, models="paper", limit=1000, train_limit=2000,
        scorers=None, seed=0, cache_dir=DEFAULT_CACHE, targets=TARGETS, srcs=None,
        log=print) -> dict:
    """Measure every target; returns what :func:`document` writes."""
    import zooindex

    names_all = available_models(zoo)
    wanted = NINE if models == "paper" else NINE + LITE + WIDE_512
    names = [m for m in wanted if m in names_all]
    if scorers is None:
        scorers = [e.name for e in zooindex.scorers() if e.name not in SLOW]
    store = Measurements(Path(cache_dir) / "bench-estimators-measurements.json"
                         if cache_dir else None)
    srcs = srcs or sources(data)
    started = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="zooindex-bench-") as tmp:
        index = Path(tmp) / "index.db"
        if names:
            zooindex.add([names_all[m] for m in names], index=index)
        info = {m["name"]: m for m in zooindex.ls(index=index)} if names else {}
        for label, source, classes in targets:
            log(f"{label}")
            train = zooindex.load_target(srcs[source], split="train", classes=classes,
                                         limit=train_limit, seed=seed)
            test = zooindex.load_target(srcs[source], split="test", classes=classes,
                                        limit=limit, seed=seed)
            results[label] = {"records": evaluate_models(
                names, train=train, test=test, index=index, store=store,
                scorers=tuple(scorers), seed=seed, log=log),
                "n_test": len(test), "n_train": len(train)}
    baselines = {"params": {m: float(info[m]["params"]) for m in names},
                 "source_accuracy": {m: source_accuracy(names_all[m]) for m in names}}
    return {"models": names, "missing": [m for m in wanted if m not in names_all],
            "scorers": list(scorers), "results": results, "baselines": baselines,
            "limit": limit, "train_limit": train_limit,
            "seconds": time.perf_counter() - started}


def summarise(measured: dict) -> dict:
    """Per estimator and baseline: tau_w per target, their mean; seconds per model."""
    rows = {}
    for name in measured["scorers"]:
        taus, secs, kendall, rho = {}, [], [], []
        for label, res in measured["results"].items():
            recs = {m: r for m, r in res["records"].items() if r["status"] == "ok"}
            c = correlation({m: r["scores"].get(name) for m, r in recs.items()},
                            {m: r["accuracy"] for m, r in recs.items()})
            taus[label] = c["tau_w"]
            kendall.append(c["tau"])
            rho.append(c["spearman"])
            secs += [r["timings"][name] for r in recs.values() if name in r["timings"]]
        rows[name] = {"taus": taus, "mean": _mean(taus.values()), "tau": _mean(kendall),
                      "spearman": _mean(rho), "seconds": float(np.mean(secs)) if secs else None}
    for label, key in BASELINES.items():
        taus, kendall, rho = {}, [], []
        for target, res in measured["results"].items():
            accs = {m: r["accuracy"] for m, r in res["records"].items() if r["status"] == "ok"}
            c = correlation(measured["baselines"][key], accs)
            taus[target] = c["tau_w"]
            kendall.append(c["tau"])
            rho.append(c["spearman"])
        rows[f"baseline: {label}"] = {"taus": taus, "mean": _mean(taus.values()),
                                      "tau": _mean(kendall), "spearman": _mean(rho),
                                      "seconds": 0.0}
    return rows


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def document(measured: dict) -> str:
    rows = summarise(measured)
    labels = list(measured["results"])
    estimators = sorted((n for n in rows if not n.startswith("baseline")),
                        key=lambda n: -(rows[n]["mean"] if rows[n]["mean"] is not None
                                        else -9))
    baselines = [n for n in rows if n.startswith("baseline")]
    table = markdown_table(
        ["estimator", *labels, "mean τ_w", "mean Kendall τ", "mean Spearman ρ", "s / model"],
        [[n, *(rows[n]["taus"][t] for t in labels), rows[n]["mean"], rows[n]["tau"],
          rows[n]["spearman"], None if rows[n]["seconds"] is None
          else f"{rows[n]['seconds']:.2f}"] for n in estimators + baselines])
    accs = markdown_table(
        ["model", *labels],
        [[m, *(res["records"][m]["accuracy"] if m in res["records"] else None
               for res in measured["results"].values())] for m in measured["models"]])
    n_test = {t: r["n_test"] for t, r in measured["results"].items()}
    n_train = {t: r["n_train"] for t, r in measured["results"].items()}
    best_base = max((rows[b]["mean"] for b in baselines if rows[b]["mean"] is not None),
                    default=None)
    lines = [
        "# Transferability estimators on the paper's zoo",
        "",
        f"_Written by `python benchmarks/bench_estimators.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {machine()}; the two cores were shared "
        "with the zoo's training while it ran, so the seconds are inflated._",
        "",
        "## Set-up",
        "",
        f"- Models: {len(measured['models'])} ({', '.join(measured['models']) or 'none'}).",
    ]
    if not any(m.endswith(("-lite", "-512")) for m in measured["models"]):
        lines.append("- The lite and 512-unit models (Tables 5 and 6) are left out for time "
                     "(about 3.5 min per model for the six targets here); `--models all` "
                     "adds them.")
    if measured["missing"]:
        lines.append(f"- **Missing** (not trained yet when this ran): "
                     f"{', '.join(measured['missing'])}. Every correlation below rests on "
                     "the models present only.")
    lines += [
        "- Targets: the **test** split of each data set, restricted to the classes, as a "
        f"stratified, seeded subsample of at most {measured['limit']:,} images "
        f"({', '.join(f'{t} {n}' for t, n in n_test.items())}). CIFAR-10 is the "
        "**CIFAR-10 (JPEG copy)** converted to 28x28 grey as the zoo saw it "
        "(`models/data.py`).",
        "- Ground truth: transfer accuracy from `zooindex.evaluate` (logits retrained on "
        "frozen features of the last hidden dense layer: logistic regression), trained on "
        f"a stratified, seeded subsample of at most {measured['train_limit']:,} training "
        f"images ({', '.join(f'{t} {n}' for t, n in n_train.items())}) and tested on the "
        "test subsample above.",
        f"- Estimators: {', '.join(measured['scorers'])}, all on the same layer; "
        + ("`linear` (a 5-fold cross-validated logistic-regression probe, the ground "
           "truth measured a second time at about 100 s per model here) is left out for "
           "time; `--scorers all` adds it. " if "linear" not in measured["scorers"] else "")
        + "`leep` and `nce` use the model's own classifier output.",
        "- Baselines that never look at the target: the parameter count (more is "
        "assumed better) and the model's accuracy on its own training task "
        "(`zooindex.source_accuracy` metadata).",
        "- Agreement: weighted Kendall τ (`scipy.stats.weightedtau`, which weighs the top "
        "of the ranking most) between each estimator's scores and the accuracies, per "
        "target; `–` where it is undefined (fewer than two models or a constant "
        "column). s / model: mean seconds of the estimator itself per model and target "
        "(features already computed).",
        "",
        "## Weighted τ per target",
        "",
        table,
        "",
        _verdict(rows, estimators, baselines, best_base),
        "",
        "## Transfer accuracy per model and target",
        "",
        accs,
        "",
        f"Whole run: {measured['seconds'] / 60:.1f} min (measurements cached from earlier "
        "runs are reused).",
    ]
    return "\n".join(lines) + "\n"


def _verdict(rows, estimators, baselines, best_base) -> str:
    ranked = [n for n in estimators if rows[n]["mean"] is not None]
    if not ranked:
        return "No estimator could be compared yet (fewer than two models per target)."
    best = ranked[0]
    text = (f"On this evidence **{best}** ranks best, with a mean weighted τ of "
            f"{rows[best]['mean']:.3f}")
    if len(ranked) > 1:
        text += f" (next: {ranked[1]} {rows[ranked[1]]['mean']:.3f})"
    text += ". "
    close = [n for n in ranked[1:] if rows[best]["mean"] - rows[n]["mean"] < 0.05]
    if close:
        text += (f"Within 0.05 of it, and so not distinguishable from it on these few "
                 f"models: {', '.join(close)}. ")
    if "silhouette" in ranked and best != "silhouette":
        text += (f"The paper's score (silhouette) comes {ranked.index('silhouette') + 1} "
                 f"of {len(ranked)} with {rows['silhouette']['mean']:.3f}. ")
    base = ", ".join(f"{b[len('baseline: '):]} {rows[b]['mean']:.3f}" for b in baselines
                     if rows[b]["mean"] is not None)
    if best_base is not None:
        text += (f"The baselines reach {base}; margin of each estimator's mean over the "
                 "better baseline: "
                 + ", ".join(f"{n} {rows[n]['mean'] - best_base:+.3f}" for n in ranked) + ".")
    text += (" With only a handful of models per target, one swapped pair moves τ_w by "
             "0.1 or more: read differences smaller than that as ties.")
    return text


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default=str(DEFAULT_ZOO))
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--models", choices=("paper", "all"), default="paper",
                        help="paper: Table 1's nine; all: also the lite and 512 ones")
    parser.add_argument("--limit", type=int, default=1000, help="test images per target")
    parser.add_argument("--train-limit", type=int, default=2000,
                        help="training images per target for the logits")
    parser.add_argument("--scorers", nargs="*", default=None,
                        help="estimators to compare (default: all but the slow linear "
                             "probe; 'all' for every one)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    scorers = args.scorers
    if scorers == ["all"]:
        import zooindex

        scorers = [e.name for e in zooindex.scorers()]
    measured = run(args.zoo, args.data, models=args.models, limit=args.limit,
                   train_limit=args.train_limit, scorers=scorers)
    Path(args.out).write_text(document(measured))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
