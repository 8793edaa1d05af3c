"""``benchmarks/REAL.md`` from the raw JSON of the real-network base."""

from __future__ import annotations

import numpy as np

from . import real_analysis as ra
from . import stats

MACHINE = "2 AMD EPYC cores, 24 GB memory, no GPU (shared with other work; runs niced, " \
          "one onnxruntime and one BLAS thread)"


def _f(x, digits=3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cost(base, cand) -> str:
    sil = base.cost.get("silhouette", np.nan)
    return _f(base.cost_of(cand) / sil, 1) + "x"


def write(raw: dict, *, draws: int = 1000) -> str:
    base = ra.Base(raw)
    logits = ra.Base(raw, protocol="logits")
    out = []
    add = out.append
    n_nets, fams = len(base.nets), sorted(set(base.family.values()))
    add("# The default ranking on networks by other authors\n")
    add(f"Machine: {MACHINE}. Date: {raw.get('date', '?')}. Command:\n\n"
        f"    {raw.get('command', 'python benchmarks/bench_real.py')}\n\n"
        "Written by `benchmarks/bench_real.py`; the raw scores and accuracies are in "
        "`benchmarks/real-scores.json` (`--analyse-only` re-runs this analysis from it).\n")
    if n_nets < 3:
        add("Fewer than three networks measured: no analysis.\n")
        return "\n".join(out)

    # -- the base
    add("## The base\n")
    add(f"{n_nets} networks in {len(fams)} families; the held-out ones (never seen by a "
        "choice) are marked. Size = parameters counted in the ONNX graph (the size prior "
        "ranks by it); width = the default layer's (the layer entering the classifier); "
        "inference = seconds for all targets' pool and test images together (1 thread).\n")
    rows = []
    for m in base.nets:
        e = raw["nets"][m]
        inf = sum(raw.get("inference_seconds", {}).get(m, {}).values())
        fam = base.family[m] + (f" ({e['family_detail'].partition(' (')[2]}"
                                if e.get("family_detail") and " (" in e["family_detail"]
                                else "")
        rows.append([m + (" **(held out)**" if e.get("held_out") else ""), fam,
                     (e.get("package") or "–") + (f" {e['version']}" if e.get("version")
                                                  else ""),
                     e["sha256"][:12], f"{e['size']:,}", "x".join(str(d) for d in e["input"]),
                     e.get("width", "–"), _f(e.get("source_accuracy")), f"{inf:.0f}"])
    add(_table(["network", "family", "package", "sha256", "size", "input", "width",
                "source acc.", "inference s"], rows) + "\n")
    if raw.get("excluded"):
        add("Left out of this run (`--exclude`): " + ", ".join(raw["excluded"]) + ".\n")
    tot = sum(sum(v.values()) for v in raw.get("inference_seconds", {}).values())
    add(f"Inference in all: {tot / 60:.1f} minutes.\n")
    sizes = raw.get("sizes", {})
    add("Targets (five classes each; test set and training pool drawn once, seeded, "
        "stratified): " + "; ".join(f"{lab} ({sizes.get(t, {}).get('test', '?')} test, "
                                    f"{sizes.get(t, {}).get('pool', '?')} pool)"
                                    for t, lab in raw["targets"].items()) + ".\n")
    add("Regimes: " + ", ".join(f"{k} labeled images per class ({v} draw"
                                f"{'s' if v > 1 else ''})" for k, v in
                                sorted(raw.get("regimes", {}).items(),
                                       key=lambda kv: int(kv[0]))) +
        ", drawn stratified from the pool; every estimator scores the drawn images' "
        "features. Ground truth: `zooindex.transfer`'s `probe` (and `logits`) trained on "
        "the whole pool, tested on the test set.\n")

    # -- the rule and the choice
    add("## The rule\n")
    add(ra.RULE)
    base_mask = base.mask(base.held_out)
    folds = ra.family_folds(base, exclude=base.held_out)
    add("## The choice, with whole families left out\n")
    whole = ra.choose(base, base_mask)
    if whole is None:
        add("No candidate is defined on these networks (tied accuracies?): no choice.\n")
        return "\n".join(out)
    if not folds:
        chosen = whole.chosen
        add("Fewer than two families with enough networks: no fold; the choice below is "
            "made on all networks at once and has no held-out value.\n")
    else:
        chosen = ra.modal_choice(base, folds)
        rows = [[f.family, f.nets, ra.name(f.choice.chosen), _f(f.choice.value),
                 _f(f.held_out_value)] for f in folds]
        add(_table(["family left out", "its networks", "chosen without it",
                    "criterion without it", "held-out value (all networks)"], rows) + "\n")
        proc = stats.nanmean([f.held_out_value for f in folds])
        add(f"**Default by the rule: `{ra.name(chosen)}`** (chosen in "
            f"{sum(f.choice.chosen == chosen for f in folds)} of {len(folds)} folds; cost "
            f"{_cost(base, chosen)} the silhouette). The procedure's held-out value (mean "
            f"over folds of each fold's choice on the rankings including the left-out "
            f"family): {_f(proc)}.\n")
    from zooindex.estimators import RECOMMENDED

    add(f"zooindex's default (`RECOMMENDED`) is `{RECOMMENDED}`"
        + (": the rule's choice." if RECOMMENDED == ra.name(chosen) else
           ", not the rule's choice: the checks kept apart (the held-out networks below, "
           "the logits protocol) contradict it; README's *Estimators* says why.") + "\n")
    add(f"For reference, the choice on all non-held-out families at once: "
        f"`{ra.name(whole.chosen)}` (criterion {_f(whole.value)}); best within budget: "
        f"`{ra.name(whole.best_in_budget)}`.\n")

    main = list(dict.fromkeys([chosen, ("logme",), ra.RECOMMENDED, ("silhouette",),
                               ("sfda",), ("hscore-shrinkage",), ("knn",), ("logme", ra.SIZE),
                               (ra.SIZE,), (ra.SOURCE,)]))
    main = [c for c in main if base.has(c)]
    add("Criterion (mean weighted tau vs the probe, 10 and 30 per class) of the default "
        "and the alternatives on the same rankings (networks not held out), with 95% "
        f"intervals from resampling targets ({draws} draws), and the paired difference "
        "to LogME:\n")
    rows = []
    for c in main:
        iv = ra.interval(base, c, base_mask, draws=draws)
        d = ra.paired(base, c, ("logme",), base_mask, draws=draws) if c != ("logme",) else None
        lg = ra.criterion(logits, c, base_mask)
        rows.append([f"`{ra.name(c)}`", str(iv), "–" if d is None else str(d), _f(lg),
                     _cost(base, c)])
    add(_table(["scorer", "criterion (probe)", "minus LogME", "criterion (logits)",
                "cost vs silhouette"], rows) + "\n")

    add("Per target (mean weighted tau at 10 and 30 per class; probe accuracy range "
        "over the networks in brackets):\n")
    rows = []
    for c in main:
        per = ra.taus(base, c, base_mask)
        rows.append([f"`{ra.name(c)}`"] + [_f(stats.nanmean(r)) for r in per])
    heads = []
    for t in base.targets:
        acc = base.truth[t][base_mask]
        heads.append(f"{raw['targets'][t]} [{np.nanmin(acc):.2f}-{np.nanmax(acc):.2f}]")
    add(_table(["scorer"] + heads, rows) + "\n")

    # -- per regime
    add("## Per regime\n")
    add("Mean weighted tau vs the probe over the targets, per number of labeled images "
        "per class (networks not held out), every single estimator and the baselines, "
        "then the rule's choice and the ensemble that was the default before this base. "
        "Intervals resample targets.\n")
    singles = [(e,) for e in base.labeled] + [(ra.SIZE,), (ra.SOURCE,)]
    regs = base.regimes
    rows = []
    for c in [c for c in dict.fromkeys(singles + [chosen, ra.RECOMMENDED, ("logme", ra.SIZE)])
              if base.has(c)]:
        rows.append([f"`{ra.name(c)}`"] + [str(ra.interval(base, c, base_mask, (r,),
                                                            draws=draws)) for r in regs])
    add(_table(["scorer"] + [f"{r} per class" for r in regs], rows) + "\n")
    add("Saturation at 10 per class: share of (network, target, draw) where the score "
        "equals another network's score on the same ranking (ties at a ceiling):\n")
    rows = []
    for e in base.labeled:
        tie = []
        for k in base.keys(["10"]):
            v = base.columns[k][e][base_mask]
            v = v[np.isfinite(v)]
            if len(v):
                tie.append(np.mean([np.sum(np.isclose(v, x, rtol=1e-9, atol=1e-12)) > 1
                                    for x in v]))
        rows.append([e, _f(stats.nanmean(tie), 2)])
    add(_table(["estimator", "tied share"], rows) + "\n")

    # -- per family
    add("## Per family\n")
    add("Criterion of each scorer on the networks with one family left out (the fold's "
        "training set), and (where a family has 3 or more networks) on the rankings "
        "within that family alone.\n")
    rows = []
    for f in folds:
        train = base.mask(base.held_out, families_out=(f.family,))
        within = base.mask(base.held_out) & ~train
        row = [f.family]
        for c in main[:6]:
            v = ra.criterion(base, c, train)
            w = ra.criterion(base, c, within) if within.sum() >= 3 else np.nan
            row.append(f"{_f(v)} / {_f(w)}")
        rows.append(row)
    add(_table(["family left out"] + [f"`{ra.name(c)}` without / within" for c in main[:6]],
               rows) + "\n")

    # -- unlabeled
    add("## Label-free scores\n")
    lf = ra.label_free_folds(base, exclude=base.held_out)
    rows = [[f.family, ra.name(f.choice.chosen), _f(f.held_out_value)] for f in lf]
    add(_table(["family left out", "label-free choice without it", "held-out value"], rows)
        + "\n")
    lf_proc = stats.nanmean([f.held_out_value for f in lf])
    size_crit = ra.criterion(base, (ra.SIZE,), base_mask)
    add(f"The label-free procedure's held-out value: {_f(lf_proc)}; the size prior alone "
        f"on the same rankings: {_f(size_crit)}.\n")
    rows = []
    for c in ra.label_free_candidates(base):
        rows.append([f"`{ra.name(c)}`", str(ra.interval(base, c, base_mask, draws=draws)),
                     str(ra.paired(base, c, (ra.SIZE,), base_mask, draws=draws))
                     if c != (ra.SIZE,) else "–"])
    add(_table(["label-free scorer", "criterion", "minus size prior"], rows) + "\n")

    # -- held out networks
    add("## The held-out networks\n")
    if not base.held_out:
        add("None yet (the fixed rule selected none among the networks measured).\n")
    else:
        full = base.mask()
        add("Held out: " + ", ".join(f"{m} ({base.family[m]})" for m in base.held_out) +
            ". Criterion on the rankings of all networks (held-out ones included) vs "
            "without them:\n")
        rows = [[f"`{ra.name(c)}`", _f(ra.criterion(base, c, full)),
                 _f(ra.criterion(base, c, base_mask))] for c in main]
        add(_table(["scorer", "with held-out networks", "without"], rows) + "\n")
        show = [chosen, ("logme",), ra.RECOMMENDED, (ra.SIZE,)]
        show = [c for c in dict.fromkeys(show) if base.has(c)]
        rows = [[r["net"], r["target"], f"{r['true']:.0f} of {r['of']}"] +
                [_f(r[ra.name(c)], 1) for c in show] for r in ra.held_out_ranks(base, show)]
        add("Rank of each held-out network (1 = best) by probe accuracy and by each "
            "scorer (mean over the 10- and 30-per-class draws):\n")
        add(_table(["network", "target", "probe rank"] + [f"`{ra.name(c)}`" for c in show],
                   rows) + "\n")

    # -- missing scores
    errors = raw.get("errors", {})
    if errors:
        add("## Missing scores\n")
        add("Scores an estimator did not give (it refused the features, the network has no "
            "classifier output, or the width is above the limit for estimators cubic in "
            "it); a ranking leaves such a network out for that estimator, and a candidate "
            f"scoring under {ra.COVERAGE:.0%} of a fold's (network, ranking) pairs is not "
            "chosen.\n")
        by_est: dict = {}
        for m in sorted(errors):
            for e, v in errors[m].items():
                entry = by_est.setdefault(e, {"nets": [], "count": 0, "reason": v["reason"]})
                entry["nets"].append(m)
                entry["count"] += v["count"]
        rows = [[e, v["count"], ", ".join(v["nets"]), v["reason"][:110].replace("|", "/")]
                for e, v in sorted(by_est.items())]
        add(_table(["estimator", "scores missing", "networks", "reason (first)"], rows) + "\n")

    # -- cost
    add("## Cost per model\n")
    add("Seconds per call on the benchmark shape (5,000 x 1,024 float32, 10 classes; "
        "1,000 source classes for the estimators that read the classifier output): the "
        "fastest of three calls, in rounds over all estimators, on this shared machine; and the mean seconds per call on this base at 100 images "
        "per class (500 samples, the networks' own widths).\n")
    sil = base.cost.get("silhouette", np.nan)
    rows = []
    for e in base.estimators:
        real = [raw["seconds"][m][t].get("100", {}).get(e) for m in raw["seconds"]
                for t in raw["seconds"][m]]
        real = [x for x in real if x is not None]
        rows.append([e, _f(base.cost[e], 2), _f(base.cost[e] / sil, 1),
                     _f(np.mean(real) if real else np.nan, 3)])
    add(_table(["estimator", "s at 5,000 x 1,024", "x silhouette", "s per call here"], rows)
        + "\n")
    return "\n".join(out)
