"""The evidence base that decides zooindex's scorers: build it, measure it, write it up.

    python benchmarks/bench_evidence.py --zoo DIR [--work ~/.cache/zooindex-evidence]
                                        [--data ../shared/data] [--draws 1000]
                                        [--no-train] [--out benchmarks/ESTIMATORS.md]

One command, resumable: every step keeps its result under ``--work`` and a rerun only does
what is missing (a new model, a new estimator, a retrained file).

1. targets: MNIST, Fashion-MNIST, CIFAR-10 grey and scikit-learn's digits, classes 0-4 and
   5-9 each (``evidence/sources.py``);
2. models: the paper's zoo from ``--zoo`` (its ``manifest.json``; copied into the work
   folder, seed replicates left out) and this base's own networks (``evidence/train.py``:
   ResNet, MobileNet, ViT and MLP trained briefly, an early and a final checkpoint of each
   run, and random-weight controls);
3. one unit per model and target (``evidence/measure.py``): features through zooindex's
   runner, every estimator, silhouette variants, few-label scores, and the ground truth
   of both transfer protocols with per-image correctness;
4. a third ground truth for a subset (``evidence/finetune.py``): 12 of the paper's models
   fine-tuned whole on 4 targets from their training checkpoints (``<zoo>/.checkpoints``);
   skipped, with a note, without torch or checkpoints, or with ``--no-finetune``;
5. statistics (``evidence/stats.py``) and ``benchmarks/ESTIMATORS.md``
   (``evidence/report.py``).

Run with one BLAS thread per process on a shared machine (``OMP_NUM_THREADS=1``): the
estimators' matrix products are small, and oversubscribed BLAS threads made them 10-30
times slower here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from evidence import finetune, measure, sources, stats, train  # noqa: E402
from zooindex import transfer  # noqa: E402

OUT = Path(__file__).with_name("ESTIMATORS.md")
DEFAULT_WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "zooindex-evidence"
# the shared data folder beside the checkout, or one level further up
DEFAULT_DATA = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent)
                     if (p / "shared" / "data").is_dir()), ROOT.parent / "shared" / "data")
TEST_LIMIT, TRAIN_LIMIT = 1000, 2000
PROTOCOLS = ("probe", "logits")
BASELINES = ("parameter count", "source-task accuracy")
# flagged experimental before this base measured them: the gate below decides each again
GATED = ("etran", "ncti", "ncti-vc", "ncti-sei", "ncti-ncc", "energy", "rankme",
         "cluster-silhouette", "prediction-entropy")
FAMILY = {"paper": "paper CNN", "lite": "paper CNN lite", "paper-512": "paper CNN 512"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- models ---------------------------------------------------------------------------


def paper_zoo(zoo: Path, work: Path) -> dict:
    """The paper's zoo (seed replicates left out), copied into ``work/zoo``; its entries."""
    from models.recipes import PAPER

    manifest = json.loads((zoo / "manifest.json").read_text())["models"]
    ZOO_MISSING[:] = [r.name for r in PAPER if r.name not in manifest]
    out = work / "zoo"
    out.mkdir(parents=True, exist_ok=True)
    models = {}
    for name, entry in sorted(manifest.items()):
        if "-seed" in name:
            continue
        src, dst = zoo / entry["file"], out / entry["file"]
        if not src.exists():
            continue
        if not dst.exists() or measure_sha(dst) != entry["sha256"]:
            shutil.copyfile(src, dst)
        if measure_sha(dst) != entry["sha256"]:
            log(f"skipping {name}: its file does not match the manifest (still being written?)")
            dst.unlink()
            continue
        models[name] = {"path": dst, "sha256": entry["sha256"],
                        "family": FAMILY.get(entry["architecture"], entry["architecture"]),
                        "source": f"{entry['dataset']} {entry['classes']}",
                        "kind": f"final ({entry['epochs']} epochs)",
                        "parameters": entry["parameters"],
                        "source_accuracy": entry["test_accuracy"]}
    return models


_SHA: dict = {}
ZOO_MISSING: list = []  # the paper's models not (yet) in the zoo folder


def measure_sha(path: Path) -> str:
    import hashlib

    key = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
    if key not in _SHA:
        _SHA[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _SHA[key]


def own_models(work: Path, data: sources.Data, do_train: bool) -> dict:
    out = work / "own"
    manifest = (train.build_all(data, out, log=log) if do_train
                else json.loads((out / "manifest.json").read_text())
                if (out / "manifest.json").exists() else {})
    models = {}
    for name in train.planned():
        if name not in manifest:
            continue
        e = manifest[name]
        family = {"paper-cnn": "paper CNN"}.get(e["architecture"], e["architecture"])
        models[name] = {"path": out / e["file"], "sha256": e["sha256"], "family": family,
                        "source": "none (random weights)" if e["kind"] == "random"
                        else f"{e['dataset']} 0-9",
                        "kind": {"random": "random", "early": f"early ({e['steps']} steps)",
                                 "final": f"final ({e['steps']} steps)"}[e["kind"]],
                        "parameters": e["parameters"],
                        "source_accuracy": e["source_accuracy"]}
    return models


# -- measuring ------------------------------------------------------------------------


def build(args) -> dict:
    work = Path(args.work).expanduser()
    started = time.perf_counter()
    data = sources.Data(args.data, work / "cache")
    target_data = {}
    for spec in sources.TARGETS:
        path = sources.build_target(data, spec, work / "targets" / f"{spec.name}.npz",
                                    test_limit=TEST_LIMIT, train_limit=TRAIN_LIMIT)
        target_data[spec.name] = sources.load_target(path)
    sizes = ", ".join(f"{k} {len(v['y_test'])}/{len(v['y_train'])}"
                      for k, v in target_data.items())
    log(f"targets ready (test/train images): {sizes}")
    # own models first (cheap and diverse), then the paper's: an interrupted build leaves
    # the most varied models measured; the analysis uses the models measured on every target
    paper = paper_zoo(Path(args.zoo), work)
    order = sorted(paper, key=lambda m: (m.endswith("-lite"), not m.endswith("-512"), m))
    models = {**own_models(work, data, not args.no_train and not args.analyse_only),
              **{m: paper[m] for m in order}}
    log(f"{len(models)} models")
    runner = measure.Runner()
    units = {}
    total = len(models) * len(target_data)
    done = 0
    for name, model in models.items():
        for target, arrays in target_data.items():
            if args.analyse_only and not measure.Unit(work, name, target).complete(
                    model["sha256"]):
                continue
            t = time.perf_counter()
            unit = measure.measure(work, name, model["path"], model["sha256"], target, arrays,
                                   runner)
            units[name, target] = unit.data
            done += 1
            took = time.perf_counter() - t
            if took > 1:
                log(f"{done}/{total} {name} x {target}: {took:.1f} s")
    complete = [m for m in models if all((m, t) in units for t in target_data)]
    if len(complete) < len(models):
        log(f"{len(models) - len(complete)} model(s) not measured on every target yet, left "
            f"out: {', '.join(m for m in models if m not in complete)}")
    models = {m: models[m] for m in complete}
    units = {k: v for k, v in units.items() if k[0] in models}
    finetuned = fine_tuning(args, work, target_data)
    return {"models": models, "targets": target_data, "units": units,
            "seconds": time.perf_counter() - started, "work": work, "finetune": finetuned}


def fine_tuning(args, work: Path, target_data: dict) -> dict:
    """The fine-tuned subset (``evidence/finetune.py``), or nothing, said why."""
    zoo = Path(args.zoo)
    if not finetune.available():
        log("fine-tuning skipped: torch is not installed; the rest is written without it")
        return {}
    if not (zoo / ".checkpoints").is_dir():
        log(f"fine-tuning skipped: {zoo / '.checkpoints'} holds no training checkpoints "
            "(python -m models.build_zoo keeps them)")
        return {}
    compute = not (args.analyse_only or args.no_finetune)
    if args.no_finetune:
        log("fine-tuning skipped (--no-finetune); its section uses what is cached")
    elif compute:
        log(f"fine-tuning {len(finetune.MODELS)} models x {len(finetune.TARGETS)} targets "
            "(cached units are reused)")
    return finetune.build(work, zoo, target_data, compute=compute, log=log)


# -- the analysis ---------------------------------------------------------------------


def analyse(base: dict, draws: int) -> dict:
    """Every number ESTIMATORS.md shows (see evidence/report.py), from the measured base."""
    from zooindex.estimators import available

    from evidence.report import CURRENT_MEMBERS

    models = list(base["models"])
    targets = list(base["targets"])
    T, M = len(targets), len(models)
    units = base["units"]
    groups = [t[:-4] for t in targets]  # the data set: "mnist-0-4" -> "mnist"
    estimators = [e for e in available(experimental=True) if e.name not in measure.SKIP]
    labeled = [e.name for e in estimators if e.needs_labels]
    label_free = [e.name for e in estimators if not e.needs_labels]

    def column(get) -> np.ndarray:
        return np.array([[_num(get(units[m, t])) for m in models] for t in targets])

    scores = {e.name: column(lambda u, n=e.name: u["scores"].get(n)) for e in estimators}
    variant_names = [k for k in units[models[0], targets[0]]["variants"] if k != "D90%"]
    for v in variant_names:
        scores[v] = column(lambda u, v=v: u["variants"].get(v))
    scores.update(_combined_columns(scores, models))
    ens_name = f"ensemble ({','.join(CURRENT_MEMBERS)})"
    params = np.array([float(base["models"][m]["parameters"]) for m in models])
    source_acc = np.array([float(base["models"][m]["source_accuracy"]) for m in models])
    scores["parameter count"] = np.tile(params, (T, 1))
    scores["source-task accuracy"] = np.tile(source_acc, (T, 1))

    acc = {p: column(lambda u, p=p: u["accuracy"][p]) for p in PROTOCOLS}
    correct = {p: [np.array([_truth(base["work"], m, t)[p] for m in models]) for t in targets]
               for p in PROTOCOLS}

    names = list(scores)
    tau = {p: {n: np.array([stats.weighted_tau(scores[n][i], acc[p][i]) for i in range(T)])
               for n in names} for p in PROTOCOLS}
    kendall = {p: {n: np.array([stats.kendall_tau(scores[n][i], acc[p][i]) for i in range(T)])
                   for n in names} for p in PROTOCOLS}
    tau["both"] = {n: (tau["probe"][n] + tau["logits"][n]) / 2 for n in names}

    # bootstrap: targets, and targets with their test images
    log(f"bootstrap: {draws} draws over targets and test images")
    picks = stats.target_draws(T, draws, seed=0)
    image = {}
    for p in PROTOCOLS:
        per_target = []
        for i in range(T):
            accs = transfer.resampled_means(correct[p][i], draws=draws, seed=100 + i)
            per_target.append(stats.taus_over_draws(np.array([scores[n][i] for n in names]),
                                                    accs))
        image[p] = np.array(per_target)                 # (T, draws, K)
    image["both"] = (image["probe"] + image["logits"]) / 2
    boot = {}
    for p in (*PROTOCOLS, "both"):
        est = np.array([tau[p][n] for n in names]).T    # (T, K)
        boot[p] = {"targets": stats.over_targets(est, picks),
                   "two_level": stats.two_level(image[p], picks)}

    def interval(p, n, kind="two_level"):
        k = names.index(n)
        return stats.percentile(stats.nanmean(tau[p][n]), boot[p][kind][:, k])

    def paired(p, a, b, kind="two_level"):
        ka, kb = names.index(a), names.index(b)
        diff = boot[p][kind][:, ka] - boot[p][kind][:, kb]
        return stats.percentile(stats.nanmean(tau[p][a] - tau[p][b]), diff)

    # the experimental estimators the evidence supports: their paired difference against
    # each target-blind baseline has an interval above zero under both protocols
    experimental = {e.name for e in estimators if e.experimental} | {"ncti"} | set(GATED)
    supported = {n: all(paired(p, n, b).low > 0 for p in PROTOCOLS for b in BASELINES)
                 for n in sorted(experimental)}
    usable = [n for n in labeled if n not in experimental or supported[n]]
    by_name = {e.name: e for e in estimators}

    # candidates: single labeled estimators, ncti, and mean-rank ensembles of 2-4 members.
    # An ensemble's members come from the estimators that are (or become) stable and read
    # the features alone, as combine.ENSEMBLE_MEMBERS must: a model without a classifier
    # output would otherwise be ranked on fewer members than the others.
    log("ensembles and leave-out selection")
    pool = [n for n in usable if not by_name[n].needs_probs]
    ensembles = stats.subsets(pool)
    cand_tau = {p: {} for p in PROTOCOLS}
    for members in ensembles:
        key = "ensemble:" + ",".join(members)
        for p in PROTOCOLS:
            cand_tau[p][key] = np.array([
                stats.weighted_tau(stats.mean_rank([scores[k][i] for k in members]),
                                   acc[p][i]) for i in range(T)])
    singles = usable + (["ncti"] if supported["ncti"] else [])
    for n in singles:
        for p in PROTOCOLS:
            cand_tau[p][n] = tau[p][n]
    cand_tau["both"] = {k: (cand_tau["probe"][k] + cand_tau["logits"][k]) / 2
                        for k in cand_tau["probe"]}
    ens_keys = ["ensemble:" + ",".join(m) for m in ensembles]
    selection = {}
    for label, cands in (("ensemble members", ens_keys), ("single estimator", singles),
                         ("recommended", singles + ens_keys)):
        selection[label] = {}
        for scheme, grouping in (("target", targets), ("data set", groups)):
            folds = stats.leave_out_select({k: cand_tau["both"][k] for k in cands}, grouping,
                                           order=cands)
            held = {p: stats.held_out_values(
                [stats.HeldOut(f.group, f.chosen, f.targets,
                               tuple(float(cand_tau[p][f.chosen][i]) for i in f.targets))
                 for f in folds], T) for p in (*PROTOCOLS, "both")}
            selection[label][scheme] = {
                "folds": [(f.group, f.chosen) for f in folds],
                "held_out": {p: _target_interval(held[p], picks) for p in held},
                "held_out_per_target": {p: held[p].tolist() for p in held},
                "vs_silhouette": {p: _target_interval(held[p] - tau[p]["silhouette"], picks)
                                  for p in held}}
        full = {k: stats.nanmean(cand_tau["both"][k]) for k in cands}
        best = max(cands, key=lambda k: (full[k], -cands.index(k)))
        selection[label]["chosen_on_all"] = best
        selection[label]["in_sample"] = {p: stats.nanmean(cand_tau[p][best])
                                         for p in (*PROTOCOLS, "both")}
        selection[label]["top"] = sorted(cands, key=lambda k: -full[k])[:8]
        selection[label]["top_values"] = {k: full[k] for k in selection[label]["top"]}
    # the leading scorers against each other
    top = sorted((n for n in names if n in labeled or n in ("ncti", ens_name)),
                 key=lambda n: -stats.nanmean(tau["both"][n]))[:6]
    top.append(max(variant_names, key=lambda n: stats.nanmean(tau["both"][n])))
    # the chosen ensemble as a scorer, with intervals like the others
    chosen_ens = selection["ensemble members"]["chosen_on_all"]
    chosen_members = chosen_ens.split(":")[1].split(",")

    # label-free, and few labels
    log("label-free and few-label scores")
    # the default must score every model: among the scores that read the features alone
    # (prediction-entropy needs the model's classifier output); both choices are shown
    free_sel = {}
    feature_free = [n for n in label_free if not by_name[n].needs_probs]
    for kind, cands in (("feature-only", feature_free), ("any", label_free)):
        free_sel[kind] = {}
        for scheme, grouping in (("target", targets), ("data set", groups)):
            folds = stats.leave_out_select({n: tau["both"][n] for n in cands}, grouping,
                                           order=cands)
            free_sel[kind][scheme] = {
                "folds": [(f.group, f.chosen) for f in folds],
                "held_out": _target_interval(stats.held_out_values(folds, T), picks)}
        free_sel[kind]["chosen_on_all"] = max(cands,
                                              key=lambda n: stats.nanmean(tau["both"][n]))
    free_sel["chosen_on_all"] = free_sel["feature-only"]["chosen_on_all"]
    if free_sel["any"]["chosen_on_all"] != free_sel["chosen_on_all"]:
        a, b = free_sel["any"]["chosen_on_all"], free_sel["chosen_on_all"]
        free_sel["any_vs_chosen"] = _target_interval(tau["both"][a] - tau["both"][b], picks)
    few = {}
    earlier, chosen = (f"ensemble ({','.join(CURRENT_MEMBERS)})",
                       f"ensemble ({','.join(chosen_members)})")
    few_names = labeled + [earlier, chosen]
    for n in few_names:
        per_target = {p: [] for p in PROTOCOLS}
        for i, t in enumerate(targets):
            vals = {p: [] for p in PROTOCOLS}
            for draw in units[models[0], t]["few"]:
                if n in (earlier, chosen):
                    members = CURRENT_MEMBERS if n == earlier else chosen_members
                    col = stats.mean_rank([[_num(units[m, t]["few"][draw].get(k))
                                            for m in models] for k in members])
                else:
                    col = np.array([_num(units[m, t]["few"][draw].get(n)) for m in models])
                if np.isfinite(col).sum() < M // 2:
                    continue
                for p in PROTOCOLS:
                    vals[p].append(stats.weighted_tau(col, acc[p][i]))
            for p in PROTOCOLS:
                per_target[p].append(stats.nanmean(vals[p]))
        per_target = {p: np.array(v) for p, v in per_target.items()}
        per_target["both"] = (per_target["probe"] + per_target["logits"]) / 2
        few[n] = {p: _target_interval(per_target[p], picks) for p in per_target}

    timings = {n: stats.nanmean([units[m, t]["timings"].get(n, np.nan) for m in models
                                 for t in targets]) for n in scores if n in
               {e.name for e in estimators}}
    d90 = [units[m, t]["variants"]["D90%"] for m in models for t in targets]
    finetuned = analyse_finetune(base, scores, names, correct,
                                 selection["recommended"]["chosen_on_all"], draws)
    return {
        "models": models, "targets": targets, "groups": groups, "names": names,
        "labeled": labeled, "label_free": label_free, "variants": variant_names,
        "ensemble_current": ens_name, "baselines": list(BASELINES),
        "tau": {p: {n: v.tolist() for n, v in tau[p].items()} for p in tau},
        "kendall": {p: {n: stats.nanmean(v) for n, v in kendall[p].items()} for p in kendall},
        "intervals": {p: {n: {"targets": interval(p, n, "targets"),
                              "two_level": interval(p, n)} for n in names}
                      for p in (*PROTOCOLS, "both")},
        "paired": {p: {n: {"silhouette": paired(p, n, "silhouette"),
                           # against the better baseline: the smaller difference
                           "baseline": min((paired(p, n, b) for b in BASELINES),
                                           key=lambda i: i.estimate),
                           "baselines": [paired(p, n, b) for b in BASELINES]}
                       for n in names} for p in (*PROTOCOLS, "both")},
        "selection": selection, "chosen_members": chosen_members,
        "supported": supported, "pool": pool, "singles": singles,
        "pairwise": {f"{a}|{b}": paired("both", a, b) for a in top for b in top if a != b},
        "top": top,
        "candidate_tau": {p: {k: v.tolist() for k, v in cand_tau[p].items()}
                          for p in cand_tau},
        "label_free_selection": free_sel, "few": few,
        "few_per_class": measure.FEW_PER_CLASS, "few_draws": measure.FEW_DRAWS,
        "few_skipped": list(measure.FEW_SKIP),
        "few_refused": [n for n in labeled if n not in measure.FEW_SKIP
                        and not np.isfinite(_est_of(few[n]["both"]))],
        "accuracy": {p: acc[p].tolist() for p in PROTOCOLS},
        "timings": timings, "d90": (int(np.min(d90)), float(np.median(d90)), int(np.max(d90))),
        "draws": draws, "n_test": {t: int(len(base["targets"][t]["y_test"])) for t in targets},
        "n_train": {t: int(len(base["targets"][t]["y_train"])) for t in targets},
        "meta": {m: {k: v for k, v in base["models"][m].items() if k != "path"}
                 for m in models},
        "widths": {m: units[m, targets[0]].get("width") for m in models},
        "errors": sorted({f"{n}: {e}" for (m, t), u in units.items()
                          for n, e in u.get("errors", {}).items()}),
        "seconds": base["seconds"],
        "zoo_missing": list(ZOO_MISSING),
        "unit_seconds": _unit_seconds(units),
        "train_seconds": _train_seconds(base["work"]),
        "finetune": finetuned,
    }


FROZEN = {"logits": "logits accuracy (frozen)", "probe": "probe accuracy (frozen)"}


def analyse_finetune(base: dict, scores: dict, names: list, correct: dict,
                     recommended: str, draws: int) -> dict | None:
    """The fine-tuned subset: every scorer's mean weighted tau against fine-tuning
    accuracy, and against both frozen protocols on the same models and targets, with
    intervals over targets and test images (the same image resamples for the three
    ground truths of a target); the frozen protocols' accuracies as scorers of
    fine-tuning. None when fewer than three models are fine-tuned on every target."""
    done = base.get("finetune") or {}
    models, targets = list(base["models"]), list(base["targets"])
    ft_targets = [t for t in finetune.TARGETS if t in targets]
    ft_models = [m for m in finetune.MODELS
                 if m in models and all((m, t) in done for t in ft_targets)]
    if len(ft_models) < 3 or not ft_targets:
        return None
    log(f"fine-tuned subset: {len(ft_models)} models x {len(ft_targets)} targets")
    cols = [models.index(m) for m in ft_models]
    rows = [targets.index(t) for t in ft_targets]
    T = len(rows)

    # scores over the subset; the combined ones recombined among the subset's models,
    # as a search of those models alone would rank them
    sub = {n: scores[n][rows][:, cols] for n in names}
    sub.update(_combined_columns(sub, ft_models))
    rec_name = f"recommended ({recommended})"
    members = recommended.split(":", 1)[1].split(",") if ":" in recommended else [recommended]
    sub[rec_name] = np.array([stats.mean_rank([sub[k][i] for k in members])
                              for i in range(T)])
    scorer_names = [rec_name, *names]

    per_image = {"finetune": [np.array([done[m, t]["correct"] for m in ft_models])
                              for t in ft_targets]}
    for p in PROTOCOLS:
        per_image[p] = [correct[p][r][cols] for r in rows]
    acc = {p: np.array([c.mean(axis=1) for c in per_image[p]]) for p in per_image}
    for p in PROTOCOLS:  # the frozen protocols' accuracies as scorers of fine-tuning
        sub[FROZEN[p]] = acc[p]
    truth_names = {"finetune": [*scorer_names, *FROZEN.values()],
                   "logits": scorer_names, "probe": scorer_names}

    picks = stats.target_draws(T, draws, seed=0)
    out = {"models": ft_models, "targets": ft_targets, "recommended": rec_name,
           "frozen": FROZEN, "recipe": finetune.RECIPE, "tau": {}, "kendall": {},
           "intervals": {}, "paired": {}, "paired_recommended": {},
           "accuracy": {p: acc[p].tolist() for p in acc},
           "mean_accuracy": {p: float(acc[p].mean()) for p in acc},
           "seconds": float(sum(done[m, t]["seconds"] for m in ft_models
                                for t in ft_targets))}
    for p, these in truth_names.items():
        tau = {n: np.array([stats.weighted_tau(sub[n][i], acc[p][i]) for i in range(T)])
               for n in these}
        image = np.array([stats.taus_over_draws(
            np.array([sub[n][i] for n in these]),
            transfer.resampled_means(per_image[p][i], draws=draws, seed=100 + rows[i]))
            for i in range(T)])                                   # (T, draws, K)
        boot = stats.two_level(image, picks)
        out["tau"][p] = {n: v.tolist() for n, v in tau.items()}
        out["kendall"][p] = {n: stats.nanmean([stats.kendall_tau(sub[n][i], acc[p][i])
                                               for i in range(T)]) for n in these}
        out["intervals"][p] = {n: stats.percentile(stats.nanmean(tau[n]), boot[:, k])
                               for k, n in enumerate(these)}
        out["paired"][p] = {n: _paired(tau, boot, these, n, "silhouette") for n in these}
        out["paired_recommended"][p] = {n: _paired(tau, boot, these, n, rec_name)
                                        for n in these}
        if p == "finetune":  # which frozen protocol ranks more like fine-tuning
            out["frozen_difference"] = _paired(tau, boot, these, *FROZEN.values())
    return out


def _paired(tau: dict, boot: np.ndarray, names: list, a: str, b: str) -> stats.Interval:
    """Mean over targets of ``tau[a] - tau[b]``, its interval from the same draws."""
    ka, kb = names.index(a), names.index(b)
    return stats.percentile(stats.nanmean(tau[a] - tau[b]), boot[:, ka] - boot[:, kb])


def _unit_seconds(units) -> dict:
    """Seconds recorded per section, summed over units (the training images' inference,
    not recorded, is left out)."""
    out = {"inference": 0.0, "protocols": 0.0, "estimators": 0.0, "variants": 0.0,
           "few labels": 0.0}
    for u in units.values():
        out["inference"] += u.get("inference_seconds", 0.0)
        out["protocols"] += sum(u.get("truth_seconds", {}).values())
        out["estimators"] += sum(u.get("timings", {}).values())
        out["variants"] += u.get("seconds", {}).get("variants", 0.0)
        out["few labels"] += u.get("seconds", {}).get("few", 0.0)
    return out


def _train_seconds(work) -> float:
    path = Path(work) / "own" / "manifest.json"
    if not path.exists():
        return 0.0
    entries = json.loads(path.read_text()).values()
    return float(sum(e.get("train_seconds", 0.0) for e in entries if e["kind"] == "final"))


def _est_of(interval) -> float:
    return interval.estimate


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def _combined_columns(scores: dict, models: list) -> dict:
    """NCTI and the earlier ensemble, ``(targets, models)`` each, combined from their
    members' columns in ``scores`` among ``models`` (as a search of those models would)."""
    from zooindex.estimators import combine

    from evidence.report import CURRENT_MEMBERS

    targets = range(len(scores[CURRENT_MEMBERS[0]]))
    ncti = combine.resolve("ncti")
    return {
        "ncti": np.array([_combined(ncti, {m: {k: scores[k][i, j] for k in ncti.members}
                                           for j, m in enumerate(models)}, models)
                          for i in targets]),
        f"ensemble ({','.join(CURRENT_MEMBERS)})": np.array(
            [stats.mean_rank([scores[k][i] for k in CURRENT_MEMBERS]) for i in targets]),
    }


def _combined(scorer, table, models) -> np.ndarray:
    clean = {m: {k: v for k, v in row.items() if np.isfinite(v)} for m, row in table.items()}
    out = scorer.combine(clean)
    return np.array([out.get(m, np.nan) for m in models])


_TRUTH: dict = {}


def _truth(work, model, target) -> dict:
    key = (model, target)
    if key not in _TRUTH:
        with np.load(measure.Unit(work, model, target).truth_path) as z:
            _TRUTH[key] = {k: z[k] for k in z.files}
    return _TRUTH[key]


def _target_interval(values: np.ndarray, picks: np.ndarray) -> stats.Interval:
    values = np.asarray(values, dtype=np.float64)
    return stats.percentile(stats.nanmean(values), stats.over_targets(values[:, None],
                                                                       picks)[:, 0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True,
                        help="the paper's zoo: a folder of ONNX files with manifest.json "
                             "(python -m models.build_zoo)")
    parser.add_argument("--work", default=str(DEFAULT_WORK),
                        help="where models, features and measurements are kept "
                             "(default: %(default)s)")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="folder with mnist/, fashion-mnist/, cifar10/ "
                             "(default: %(default)s)")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    parser.add_argument("--no-train", action="store_true",
                        help="use the own models already trained; train none")
    parser.add_argument("--no-finetune", action="store_true",
                        help="fine-tune nothing: use the fine-tuned units already cached")
    parser.add_argument("--analyse-only", action="store_true",
                        help="measure nothing: analyse the models already measured on "
                             "every target")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    base = build(args)
    log(f"base built in {base['seconds'] / 60:.1f} min; analysing")
    t = time.perf_counter()
    result = analyse(base, args.draws)
    result["analysis_seconds"] = time.perf_counter() - t
    result["command"] = ("python benchmarks/bench_evidence.py --zoo " + str(args.zoo)
                         + ("" if args.draws == 1000 else f" --draws {args.draws}"))
    result["transfer"] = measure.transfer_source()
    from evidence.report import document

    work = Path(args.work).expanduser()
    (work / "analysis.json").write_text(json.dumps(result, indent=1, default=_jsonable))
    Path(args.out).write_text(document(result))
    log(f"wrote {args.out} (analysis {result['analysis_seconds']:.0f} s)")


def _jsonable(obj):
    if isinstance(obj, stats.Interval):
        return {"estimate": obj.estimate, "low": obj.low, "high": obj.high}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj))


if __name__ == "__main__":
    main()
