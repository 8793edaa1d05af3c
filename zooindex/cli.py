"""The ``zooindex`` command line: parse flags, call one API function, format the result.

Nothing heavy is imported at module level so that ``zooindex --help`` stays fast; every
command imports what it needs when it runs. Errors of the :class:`ZooIndexError` family
become one line on stderr and exit code 1 (set ZOOINDEX_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import os
import sys

import click

DEBUG_ENV = "ZOOINDEX_DEBUG"


def _number_list(kind, what):
    """A click callback parsing '1,2,3' into a tuple of ``kind``."""

    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(kind(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {what}, got '{value}'") \
                from None

    return parse


_float_list = _number_list(float, "numbers")
_int_list = _number_list(int, "whole numbers")


def _tags(ctx, param, values):
    tags = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got '{item}'")
        tags[key] = val
    return tags


def _dump_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=_jsonable))


def _jsonable(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _table(rows: list[dict], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate([[r.get(h, "") for h in headers] for r in rows], headers=headers,
                    floatfmt=".4f")


# Options shared by several commands, each defined once from zooindex.choices' constants
# (constants only: no numpy, onnx or onnxruntime is imported for --help).
from .choices import (CHANNEL_ORDERS, CROPS, DEFAULT_BATCH_SIZE, DEFAULT_DIM,  # noqa: E402
                      DEFAULT_METRIC, DEFAULT_SCORER, DEFAULT_SEED, DEVICES, EXECUTORS,
                      INPUT_RANGES, INTERPOLATIONS, LAYER_AGGREGATIONS, METRICS, POOLINGS,
                      PRESETS, PROTOCOLS, SPLITS)

index_option = click.option(
    "--index", "index_path", type=click.Path(dir_okay=False), envvar="ZOOINDEX_INDEX",
    help="Index database [env ZOOINDEX_INDEX; default: index.db in the user data dir].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")


def _stack(*options):
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


scoring_options = _stack(
    click.option("--layer", default=None, metavar="LAYER",
                 help="'default' (the representation entering the classifier), a tensor "
                 "name, or 'all' (every candidate layer). See `zooindex layers MODEL`."),
    click.option("--dim", "-D", type=click.IntRange(min=1), default=DEFAULT_DIM,
                 show_default=True, help="D: PCA components before the distance-based "
                 "scores."),
    click.option("--metric", type=click.Choice(METRICS), default=DEFAULT_METRIC,
                 show_default=True, help="Distance of the silhouette."),
    click.option("--scorer", "scorers", multiple=True, default=[DEFAULT_SCORER],
                 show_default=True, help="Estimator or combiner, repeatable; ranked by the "
                 "first. 'recommended', 'ensemble:a,b,c' (a rank average of estimators) and "
                 "'all' work too. See `zooindex scorers`."),
)
target_options = _stack(
    click.option("--classes", help="Keep these target classes: '0-4', '3,7,9', 'cat,dog'."),
    click.option("--limit", type=click.IntRange(min=1),
                 help="A stratified, seeded subsample of N samples."),
    click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED,
                 show_default=True, help="Seed of the subsample, PCA and estimators."),
    click.option("--split", type=click.Choice(SPLITS),
                 help="Split, for data sets that have splits."),
    click.option("--input-range", type=click.Choice(INPUT_RANGES),
                 help="What the target's numbers are: 0-255 pixels or 0-1 values "
                 "[default: decided from the data, and said]."),
)
def _remember(ctx, param, value):
    """Keep a text option's value for :func:`_selection` and :func:`_options`, so that
    every command that reads a target takes the text options without listing them."""
    ctx.meta.setdefault("zooindex.text", {})[param.name] = value
    return value


text_target_options = _stack(
    click.option("--text-column", expose_value=False, callback=_remember, metavar="NAME",
                 help="Text targets (.csv/.tsv/.jsonl/.parquet): the column of texts "
                 "[default: text, sentence, sentence1, ... whichever the file has]."),
    click.option("--label-column", expose_value=False, callback=_remember, metavar="NAME",
                 help="Text targets: the column of labels [default: label, labels, "
                 "target or y]; real numbers make a regression target."),
    click.option("--text-pair-column", expose_value=False, callback=_remember,
                 metavar="NAME", help="Text targets: the column of each pair's second text "
                 "[default: sentence2 or hypothesis beside sentence1 or premise]."),
    click.option("--pooling", expose_value=False, callback=_remember,
                 type=click.Choice(POOLINGS), default="mean", show_default=True,
                 help="Text models: a hidden state's tokens become one row by their mean "
                 "over real tokens, or the first token ([CLS])."),
    click.option("--layer-aggregation", expose_value=False, callback=_remember,
                 type=click.Choice(LAYER_AGGREGATIONS), default="last", show_default=True,
                 help="Text models: last: the default layer (the classifier's input, else "
                 "the last hidden state); mean: the mean of every block's hidden state; "
                 "best: every hidden state, the best ranking the model."),
)
run_options = _stack(
    click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE,
                 help="Samples per onnxruntime batch [default: chosen per model by memory, "
                 "256 at most on the CPU]."),
    click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                 help="Where onnxruntime runs the models (auto: CUDA when a GPU is really "
                 "there)."),
)


executor_options = _stack(
    click.option("--executor", type=click.Choice(EXECUTORS), default="pipeline",
                 show_default=True, help="How the models are run: the local pipeline, one "
                 "after the other, or as tasks on a Ray cluster."),
    click.option("--ray-address", envvar="ZOOINDEX_RAY_ADDRESS", metavar="ADDR",
                 help="With --executor ray: the cluster (e.g. 10.0.0.5:6379) [env "
                 "ZOOINDEX_RAY_ADDRESS; default: start or join a local Ray]."),
    click.option("--ray-cpus", type=click.FloatRange(min=0, min_open=True), default=1.0,
                 show_default=True, help="With --executor ray: CPUs per model task (and "
                 "onnxruntime's threads)."),
    click.option("--ray-scores-only", is_flag=True, help="With --executor ray: bring back "
                 "scores only, not activations for the cache (for big zoos)."),
)


def _executor(executor, ray_address=None, ray_cpus=1.0, ray_scores_only=False):
    """The executor the flags ask for, made only when it is not the default."""
    if executor == "ray":
        from . import executor as executors

        return executors.get("ray", address=ray_address, cpus_per_task=ray_cpus,
                             return_activations=not ray_scores_only)
    if ray_address or ray_scores_only:
        raise click.UsageError("--ray-address and --ray-scores-only need --executor ray")
    return executor


def _protocol_params(protocol, epochs):
    if epochs is None:
        return None
    if protocol != "logits":
        raise click.UsageError("--epochs applies to --protocol logits")
    return {"epochs": epochs}


def _text_option(name: str, default=None):
    ctx = click.get_current_context(silent=True)
    value = None if ctx is None else ctx.meta.get("zooindex.text", {}).get(name)
    return default if value is None else value


def _options(layer, dim, metric, scorers, seed, batch_size, device, confidence=True):
    from .options import SearchOptions

    return SearchOptions(layer=layer, dim=dim, metric=metric, scorers=tuple(scorers),
                         seed=seed, batch_size=batch_size, device=device,
                         confidence=confidence, pooling=_text_option("pooling", "mean"),
                         layer_aggregation=_text_option("layer_aggregation", "last"))


confidence_option = click.option(
    "--no-confidence", "no_confidence", is_flag=True,
    help="Skip the ranking's confidence (rank intervals and the chance of being first, "
         "from half-samples of the target).")


def _selection(classes, limit, seed, split=None, input_range=None):
    from .options import TargetSelection

    return TargetSelection(classes=classes, limit=limit, seed=seed, split=split,
                           input_range=input_range, text_column=_text_option("text_column"),
                           label_column=_text_option("label_column"),
                           text_pair_column=_text_option("text_pair_column"))


def filter_options(func):
    """--tag/--source/--max-params/--name: narrow which indexed models take part."""
    return _stack(
        click.option("--tag", "filter_tags", multiple=True, callback=_tags,
                     metavar="KEY=VALUE", help="Only models with this tag; repeatable."),
        click.option("--source", "filter_source",
                     type=click.Choice(["local", "hf", "manifest"]),
                     help="Only models from this source."),
        click.option("--max-params", type=click.IntRange(min=0),
                     help="Only models with at most N parameters."),
        click.option("--name", "filter_name", metavar="GLOB",
                     help="Only models whose name matches, e.g. 'fashion-*'."),
    )(func)


def _filter(filter_tags, filter_source, max_params, filter_name, names=()):
    if not (filter_tags or filter_source or max_params is not None or filter_name or names):
        return None
    from .zoo import Filter

    return Filter(tags=filter_tags or None, source=filter_source, max_params=max_params,
                  name=filter_name, names=tuple(names) or None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zooindex")
def cli():
    """Rank a zoo of pre-trained ONNX models for your labeled data, without training.

    \b
      zooindex add models/demo/                  index every .onnx in a folder
      zooindex search target.npz                 rank them for a labeled target
      zooindex search target.npz --json          ... as JSON for scripts
    """


@cli.command()
@click.argument("paths", nargs=-1)
@click.option("--name", help="Name of the model (default: file stem). One file only.")
@click.option("--layer", help="Use this tensor as the model's default layer.")
@click.option("--tag", "tags", multiple=True, callback=_tags, metavar="KEY=VALUE",
              help="Free-form tag; repeatable.")
@click.option("--replace", is_flag=True, help="Overwrite a model of the same name.")
@click.option("--scale", type=float, help="Multiply [0,1] inputs by this (e.g. 255).")
@click.option("--mean", callback=_float_list, help="Per-channel mean, e.g. 0.485,0.456,0.406")
@click.option("--std", callback=_float_list, help="Per-channel std, e.g. 0.229,0.224,0.225")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), help="Image layout of the input.")
@click.option("--preset", type=click.Choice(PRESETS),
              help="Mean, std, resize filter and crop of a common recipe; other flags "
              "override its parts.")
@click.option("--interpolation", type=click.Choice(INTERPOLATIONS),
              help="Resize filter [default: bilinear].")
@click.option("--antialias/--no-antialias", default=None,
              help="Widen the filter when shrinking, as PIL and torchvision do [default: on].")
@click.option("--crop", type=click.Choice(CROPS),
              help="none: stretch to the model's size; center: keep the aspect ratio, "
              "resize the shorter side, cut the centre; squash: resize both sides, cut "
              "the centre [default: none].")
@click.option("--crop-pct", type=click.FloatRange(0, 1, min_open=True),
              help="timm's crop_pct: resize to model size / crop_pct, then crop.")
@click.option("--resize-size", callback=_int_list, metavar="N[,M]",
              help="Resize to this size before the crop (HF's size), e.g. 256.")
@click.option("--input-size", callback=_int_list, metavar="H,W",
              help="Size to feed a model whose input size is not fixed, e.g. 224,224.")
@click.option("--channels", type=click.Choice(CHANNEL_ORDERS, case_sensitive=False),
              help="Channel order of a colour model's input: bgr for models trained on BGR "
              "images (Caffe, OpenCV, PaddlePaddle); --mean/--std are then in BGR order "
              "[default: rgb].")
@click.option("--tokenizer", type=click.Path(exists=True),
              help="Text models: the model's tokenizer.json (or its folder) [default: the "
              "tokenizer.json beside the model file].")
@click.option("--input", "input_name", help="For models with several inputs: the one that "
              "takes the data (the others get default values).")
@click.option("--output", "output_name", help="The graph output that carries class scores "
              "(LEEP and NCE read it), when the structure does not tell.")
@click.option("--manifest", help="Also add every model of an ONNX Model Zoo manifest "
              "(ONNX_HUB_MANIFEST.json: a file, folder or URL).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Where downloaded models go [env ZOOINDEX_CACHE].")
@click.option("--allow-pickle", is_flag=True, help="Export checkpoints whose weights are "
              "pickled (pytorch_model.bin) too; read as tensors only, with a warning.")
@click.option("--keep-going", is_flag=True, help="Add the models that can be added and "
              "report the others (exit code 1 if any failed), instead of adding none.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where hf:// references are downloaded and inspected: "
              "here, or one Ray task each, in parallel.")
@click.option("--ray-address", envvar="ZOOINDEX_RAY_ADDRESS", metavar="ADDR",
              help="With --executor ray: the cluster [env ZOOINDEX_RAY_ADDRESS].")
@index_option
@json_option
def add(paths, name, layer, tags, replace, scale, mean, std, layout, preset, interpolation,
        antialias, crop, crop_pct, resize_size, input_size, channels, tokenizer, input_name,
        output_name, manifest, cache_dir, allow_pickle, keep_going, executor, ray_address,
        index_path, as_json):
    """Index ONNX models: files, folders (recursive), hf://OWNER/REPO[@REV][/FILE.onnx];
    transformers/timm checkpoints (folders, hub repos) are exported to ONNX first."""
    from . import zoo
    from .store import default_path

    if not paths and not manifest:
        raise click.UsageError("give model files, folders, hf:// references or --manifest")
    where = default_path() if index_path is None else click.format_filename(index_path)
    existed = os.path.exists(where)
    results = zoo.add(list(paths), index=index_path, name=name, layer=layer, tags=tags,
                      replace=replace, input=input_name, output=output_name,
                      manifest=manifest, tokenizer=tokenizer,
                      cache_dir=cache_dir, keep_going=keep_going, allow_pickle=allow_pickle,
                      executor=_executor(executor, ray_address) if executor == "ray" else None,
                      scale=scale, mean=mean,
                      std=std, layout=layout, preset=preset, interpolation=interpolation,
                      antialias=antialias, crop=crop, crop_pct=crop_pct,
                      resize_size=resize_size, input_size=input_size,
                      channels=channels)
    if not existed and os.path.exists(where):
        click.echo(f"created the index {where}", err=True)
    if as_json:
        _dump_json([r.to_dict() for r in results])
    else:
        for r in results:
            if r.status == "failed":
                click.echo(f"failed    {r.path}: {r.reason}", err=True)
                continue
            layer_note = f"default layer {r.default_layer}" if r.default_layer else \
                "no default layer: search it with --layer"
            click.echo(f"{r.status:9} {r.name}  ({layer_note})")
    if any(r.status == "failed" for r in results):
        sys.exit(1)


@cli.command()
@click.argument("model")
@index_option
@json_option
def layers(model, index_path, as_json):
    """List a model's candidate layers; * marks the default."""
    from . import zoo

    record = zoo.show(model, index=index_path)
    rows = record["layers"]
    if as_json:
        _dump_json(rows)
        return
    for r in rows:
        r["default"] = "*" if r["is_default"] else ""
        r["shape"] = "x".join("?" if s is None else str(s) for s in r["shape"])
    click.echo(_table(rows, ["default", "name", "op", "kind", "width", "shape"]))
    if record["default_layer"]:
        why = f": {record['default_reason']}" if record.get("default_reason") else ""
        click.echo(f"\ndefault (*) {record['default_layer']}{why}")
    else:
        click.echo(f"\nno default layer{': ' + record['default_reason'] if record.get('default_reason') else ''}"
                   "; pass --layer to search")


@cli.command()
@click.argument("target", type=click.Path(exists=True))
@scoring_options
@target_options
@text_target_options
@click.option("--top", type=click.IntRange(min=1), help="Show only the K best rows.")
@run_options
@executor_options
@click.option("--model", "models", multiple=True, help="Rank only these models.")
@filter_options
@index_option
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV on stdout.")
@click.option("--refresh", is_flag=True, help="Re-index models whose file changed since "
              "they were added, instead of skipping them.")
@confidence_option
@click.option("--budget", default=None, metavar="FRACTION|TIME|auto",
              help="Spend at most this fraction of a full search's inference (0.3 or 30%), "
              "or this time (90s, 5m), or `auto` (until the top K is settled): models race "
              "on growing subsamples of the target and those that cannot reach the top K "
              "(--top, default 3) are dropped.")
def search(target, layer, dim, metric, scorers, classes, limit, seed, split, input_range,
           top, batch_size, device, executor, ray_address, ray_cpus, ray_scores_only, models,
           filter_tags, filter_source, max_params, filter_name, index_path, as_json, as_csv,
           refresh, no_confidence, budget):
    """Rank every indexed model for a labeled TARGET.

    \b
    By default by the recommended scorer, which `zooindex scorers` marks: a mean
    rank of several estimators over the models searched, each member's score
    printed beside it. --scorer silhouette ranks by neuralRank's score, the paper's.

    \b
    With --json, prints one object: the search's context (target, samples, classes,
    scorers, D, metric, layer, zooindex version, counts, notes) and its rows under
    "results" (ranked first, then skipped models with their reason).

    \b
    How firm the order is: each row's rank over 100 stratified half-samples of
    the target's images (no model runs again): "ranks", the 5th to 95th
    percentile, and "first", the share of half-samples that rank it first. A
    line under the table says when the top two swap in 5% of them or more.
    --no-confidence skips it.

    \b
    --budget 0.3 ranks on at most 30% of the inference of a full search: every
    model first sees a few images per class, the models whose rank interval
    cannot reach the top K are dropped, the others see twice as many (each image
    runs once: what a model saw is kept), until the budget is spent or the
    target used up; --budget 90s bounds the time, --budget auto stops when the
    top K is settled. It says what each model saw, what was saved, and after how
    many images per class the top K stopped changing. A later full search runs
    only the images not seen yet.
    """
    from .ranking import search as rank

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive; choose one")
    if budget is not None and no_confidence:
        raise click.UsageError("--budget races models on their confidence; drop "
                               "--no-confidence")
    options = _options(layer, dim, metric, scorers, seed, batch_size, device,
                       not no_confidence)
    selection = _selection(classes, limit, seed, split, input_range)
    chosen = _filter(filter_tags, filter_source, max_params, filter_name, models)
    run_on = _executor(executor, ray_address, ray_cpus, ray_scores_only)
    raced = None
    if budget is not None:
        from .budget import parse_budget, search_on_budget

        budget = parse_budget(budget)  # a bad one: a one-line error naming --budget
        raced = search_on_budget(target, budget, top or 3, options, index=index_path,
                                 selection=selection, filter=chosen, executor=run_on)
        ranking = raced.ranking
    else:
        ranking = rank(target, options, index=index_path, selection=selection, top=top,
                       filter=chosen, progress=None, refresh=refresh, executor=run_on)
    rows = [_search_row(ranking, r) for r in ranking.results]
    if raced is not None:
        for row in rows:
            row["images_seen"] = raced.seen.get(row["model"])
    if as_json:
        doc = _search_json(ranking, rows)
        if raced is not None:
            doc["budget"] = raced.to_dict()
        _dump_json(doc)
    elif as_csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        ok = [r for r in rows if r["status"] == "ok"]
        sure = ["ranks", "first"] if ranking.confidence else []
        for r in ok:
            if r["rank_low"] is not None:
                r["ranks"] = str(r["rank_low"]) if r["rank_low"] == r["rank_high"] \
                    else f"{r['rank_low']}-{r['rank_high']}"
                r["first"] = f"{r['p_first']:.0%}"
        seen = ["images_seen"] if raced is not None else []
        headers = ["rank", "model", "score", *ranking.columns[1:], *sure, *seen, "layer",
                   "width", "seconds"]
        labels = f"{len(ranking.classes)} classes" if ranking.classes else \
            "real-valued labels (regression)" if ranking.task == "regression" else "no labels"
        click.echo(f"target {ranking.target}: {ranking.n} samples, {labels}; "
                   f"{_scorer_label(ranking.scorers[0], ranking)}"
                   f"{f', D={dim}' if _uses(ranking, 'dim') else ''}"
                   f"{', ' + metric if _uses(ranking, 'metric') else ''}", err=True)
        if ok:
            click.echo(_table(ok, headers))
        if ranking.ranked:
            for r in ranking.skipped:
                click.echo(f"skipped {r.model}: {r.reason}", err=True)
        if raced is None:  # a budget's lines say what its rounds ran, not the last's
            click.echo(_summary(ranking, top), err=True)
        if ranking.confidence and ranking.confidence["sentence"]:
            click.echo(ranking.confidence["sentence"], err=True)
        if raced is not None:
            for line in _budget_lines(raced):
                click.echo(line, err=True)
    for note in ranking.notes:
        click.echo(f"note: {note}", err=True)
    if not ranking.ranked:
        click.echo(f"Error: no model was ranked for {ranking.target}: "
                   f"{_why_none(ranking.skipped)}", err=True)
        sys.exit(1)


def _budget_lines(raced) -> list[str]:
    """What a budgeted search spent, saved, and did in each round."""
    lines = [raced.summary]
    for i, r in enumerate(raced.rounds, 1):
        if r["dropped"]:
            lines.append(f"dropped after round {i} ({r['images']} {raced.samples} each): "
                         f"{', '.join(r['dropped'])}")
    lines.append(raced.advice[0].upper() + raced.advice[1:])
    return lines


def _search_row(ranking, r) -> dict:
    row = {"rank": r.rank, "model": r.model, "score": r.score, "layer": r.layer,
           "width": r.width, "components": r.components, "seconds": round(r.seconds, 3),
           "cached": r.cached, "provider": r.provider, "status": r.status,
           "reason": r.reason,
           "rank_low": r.rank_interval[0] if r.rank_interval else None,
           "rank_high": r.rank_interval[1] if r.rank_interval else None,
           "p_first": None if r.p_first is None else round(r.p_first, 4)}
    for name in ranking.columns:
        row[name] = r.scores.get(name)
    return row


def _search_json(ranking, rows) -> dict:
    from . import __version__

    options = ranking.options
    doc = {"zooindex": __version__, "target": ranking.target, "samples": ranking.n,
           "classes": ranking.classes, "scorers": ranking.scorers, "dim": ranking.dim,
           "metric": ranking.metric, "layer": options.layer if options else None,
           "seconds": round(ranking.seconds, 3), "stats": ranking.stats,
           "notes": ranking.notes, "confidence": ranking.confidence, "results": rows}
    if ranking.task != "classification":  # the key only where it says something
        doc["task"] = ranking.task
    return doc


def _summary(ranking, top) -> str:
    """One line that counts the whole search, whatever --top shows."""
    st = ranking.stats
    pairs = f" ({st['pairs']} model/layer rows)" if st["pairs"] != st["ranked"] else ""
    where = f" on {', '.join(st['providers'])}" if st["providers"] else ""
    shown = f"; showing the top {len(ranking.ranked)}" if top is not None else ""
    return (f"{st['ranked']} of {st['models']} models ranked{pairs}, {st['skipped']} "
            f"skipped, in {ranking.seconds:.1f} s: {st['run']} run{where}, "
            f"{st['from_activations']} scored from cached activations, "
            f"{st['from_scores']} from cached scores{shown}")


def _why_none(skipped) -> str:
    """Why nothing was ranked, in one line: the shared reason when all models share it."""
    import re

    def general(r):
        return re.sub(rf"\b{re.escape(r.model)}\b", "MODEL", r.reason or "")

    if len(skipped) == 1:
        return skipped[0].reason
    reasons = {general(r) for r in skipped}
    if len(reasons) == 1:
        return f"{reasons.pop()} (all {len(skipped)} models)"
    shown = "; ".join(f"{r.model}: {r.reason}" for r in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    return shown + more


@cli.command()
@click.option("--train", type=click.Path(exists=True), help="Training split of the target.")
@click.option("--test", type=click.Path(exists=True), help="Test split of the target.")
@click.option("--target", type=click.Path(exists=True),
              help="One target, split with --test-size.")
@click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Share of --target held out for testing.")
@scoring_options
@target_options
@text_target_options
@click.option("--train-limit", type=click.IntRange(min=1),
              help="Stratified subsample of the training split.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default="logits", show_default=True,
              help="How each model is adapted to the target: logits (the paper's: a new "
              "logits layer on frozen features, SGD) or probe (logistic regression).")
@click.option("--epochs", type=click.IntRange(min=1),
              help="Epochs of the logits protocol [default: 67, the paper's recipe].")
@run_options
@executor_options
@click.option("--model", "models", multiple=True, help="Evaluate only these models.")
@index_option
@json_option
def evaluate(train, test, target, test_size, layer, dim, metric, scorers, classes, limit,
             seed, split, input_range, train_limit, protocol, epochs, batch_size, device,
             executor, ray_address, ray_cpus, ray_scores_only, models, index_path, as_json):
    """Measure real transfer accuracy and how well the ranking predicts it."""
    from . import evaluation

    if split is not None:
        raise click.UsageError("evaluate takes its splits from --train and --test (or "
                               "--target with --test-size); drop --split")
    ev = evaluation.evaluate(
        train=train, test=test, target=target, test_size=test_size,
        options=_options(layer, dim, metric, scorers, seed, batch_size, device),
        selection=_selection(classes, limit, seed, input_range=input_range), index=index_path,
        train_limit=train_limit, models=list(models) or None, progress=None,
        executor=_executor(executor, ray_address, ray_cpus, ray_scores_only),
        protocol=protocol, protocol_params=_protocol_params(protocol, epochs))
    if as_json:
        _dump_json(ev.to_dict())
        return
    rows = []
    for m in ev.models:
        row = {"model": m.model, "accuracy": m.accuracy, "layer": m.layer,
               "status": m.status}
        row.update(m.scores)
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    click.echo(_table(ok, ["model", "accuracy", *ev.scorers, "layer"]))
    for m in ev.models:
        if m.status != "ok":
            click.echo(f"skipped {m.model}: {m.reason}", err=True)
    click.echo("")
    agree = []
    for name, v in ev.agreement.items():
        row = {"scorer": name, **v}
        for stat in ("tau_w", "tau"):
            interval = v.get(f"{stat}_interval")
            row[f"{stat} 95%"] = f"[{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""
        agree.append(row)
    click.echo(_table(agree, ["scorer", "tau_w", "tau_w 95%", "tau", "tau 95%", "spearman",
                              "top1", "seconds"]))
    cached = sum(m.cached for m in ev.models if m.status == "ok")
    click.echo(f"\naccuracy: the {ev.protocol} protocol; intervals: bootstrap over the test "
               f"images. Ranking took {ev.search_seconds:.1f} s; retraining took "
               f"{ev.transfer_seconds:.1f} s ({cached} models' accuracies from the cache)",
               err=True)


@cli.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="report.html (self-contained page) or report.png (one figure); its "
              "folder must exist.")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Models to plot.")
@scoring_options
@click.option("--dims", callback=_int_list, default="2,3,5,10,20,50,100", show_default=True,
              help="D values of the score-vs-D curves.")
@target_options
@text_target_options
@click.option("--max-points", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Points per 3D scatter.")
@run_options
@executor_options
@filter_options
@index_option
@confidence_option
@click.option("--budget", default=None, metavar="FRACTION|TIME|auto",
              help="Rank as `zooindex search --budget` does, aiming at the --top models: "
              "the report says what was spent and saved, the rounds and the advice, and "
              "plots the models of the last round on the images they saw.")
def report(target, out, top, layer, dim, metric, scorers, dims, classes, limit, seed, split,
           input_range, max_points, batch_size, device, executor, ray_address, ray_cpus,
           ray_scores_only, filter_tags, filter_source, max_params, filter_name, index_path,
           no_confidence, budget):
    """Write a report: ranking, score-vs-D curves, 3D PCA scatter of the top models."""
    from .reporting import report as write_report

    if budget is not None and no_confidence:
        raise click.UsageError("--budget races models on their confidence; drop "
                               "--no-confidence")
    path = write_report(
        target, _options(layer, dim, metric, scorers, seed, batch_size, device,
                         not no_confidence), out=out,
        index=index_path, selection=_selection(classes, limit, seed, split, input_range),
        top=top, dims=dims, max_points=max_points, progress=None,
        executor=_executor(executor, ray_address, ray_cpus, ray_scores_only),
        filter=_filter(filter_tags, filter_source, max_params, filter_name), budget=budget)
    click.echo(f"wrote {path}")


@cli.command(name="ls")
@filter_options
@index_option
@json_option
def ls_cmd(filter_tags, filter_source, max_params, filter_name, index_path, as_json):
    """List indexed models and whether their files are still as indexed."""
    from . import zoo

    rows = zoo.ls(index=index_path,
                  filter=_filter(filter_tags, filter_source, max_params, filter_name))
    if as_json:
        _dump_json(rows)
        return
    for r in rows:
        r["input"] = "x".join(str(s) for s in r["input"])
        r["tags"] = ",".join(f"{k}={v}" for k, v in r["tags"].items())
    click.echo(_table(rows, ["name", "status", "params", "input", "layer", "width", "source",
                             "tags"])
               if rows else "the index is empty; add models with `zooindex add`")


@cli.command(name="check")
@click.option("--fix", is_flag=True, help="Remove orphaned and damaged cache entries.")
@index_option
@json_option
def check_cmd(fix, index_path, as_json):
    """Check the index: SQLite integrity, model files and hashes, orphaned cache rows."""
    from .audit import check

    report = check(index=index_path, fix=fix)
    if as_json:
        _dump_json(report.to_dict())
    else:
        for table, count in report.fixed.items():
            if count:
                click.echo(f"removed {count} {table}", err=True)
        cache = report.cache
        summary = (f"{len(report.models)} models, {cache['activations']} cached activations, "
                   f"{cache['scores']} scores, {cache['file_bytes'] / 1e6:.1f} MB on disk"
                   if cache else "could not be read")
        click.echo(f"{report.path}: {'sound' if report.ok else 'NOT sound'}; {summary}")
        for line in report.problems:
            click.echo(f"problem: {line}")
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("model")
@index_option
@json_option
def show(model, index_path, as_json):
    """Show what MODEL is and how its inputs will be prepared.

    \b
    File and sha256, input, the preprocessing as it will be applied, the default
    layer and why, the class-score output, hub metadata and cached targets; with
    --json, everything the index holds, the preprocessing resolved under
    "preprocessing_resolved".
    """
    from . import zoo

    shown = zoo.show(model, index=index_path)
    if as_json:
        _dump_json(shown)
        return
    lines = zoo.summary(shown)
    pad = max(len(label) for label, _ in lines)
    for label, text in lines:
        click.echo(f"{label:<{pad}}  {text}")


@cli.command()
@click.argument("model")
@index_option
def rm(model, index_path):
    """Remove MODEL from the index (the file itself is left alone)."""
    from . import zoo

    rec = zoo.rm(model, index=index_path)
    click.echo(f"removed {rec['name']}")


@cli.group()
def cache():
    """Inspect or clear cached activations and scores."""


@cache.command(name="clear")
@index_option
def cache_clear(index_path):
    """Drop every cached activation and score (models stay indexed)."""
    from . import zoo

    stats = zoo.cache_clear(index=index_path)
    click.echo(f"cleared {stats['activations']} cached activations "
               f"({stats['activation_bytes'] / 1e6:.1f} MB) and {stats['scores']} scores")


@cache.command(name="info")
@index_option
@json_option
def cache_info(index_path, as_json):
    """Show the size of the cache."""
    from . import zoo

    stats = zoo.cache_info(index=index_path)
    if as_json:
        _dump_json(stats)
        return
    click.echo(f"{stats['activations']} cached activations, "
               f"{stats['activation_bytes'] / 1e6:.1f} MB of {stats['limit_bytes'] / 1e6:.0f} MB "
               f"in {stats['folder']}; {stats['scores']} scores; {stats['targets']} targets")
    for t in stats["by_target"][:5]:
        sweep = f" ({t['layers']} layers: a layer sweep)" if t["layers"] > 2 else ""
        click.echo(f"  {t['bytes'] / 1e6:8.1f} MB  {t['entries']} entries of {t['models']} "
                   f"models{sweep}  {t['source'] or t['key'][:12]}")


@cli.command()
@click.option("--experimental", is_flag=True, help="Also list estimators still being "
              "evaluated (usable by name either way).")
@json_option
def scorers(experimental, as_json):
    """List the transferability estimators and combiners; * marks the recommended one,
    which a search uses by default."""
    from .estimators.combine import listing

    rows = [r for r in listing() if experimental or not r["experimental"]]
    if as_json:
        _dump_json(rows)
        return
    for r in rows:
        r["name"] = ("* " if r["recommended"] else "  ") + r["name"]
        if r["experimental"]:
            r["description"] = "[experimental] " + r["description"]
        if r["members"]:
            r["description"] += f" (default members: {r['members']})"
    click.echo(_table(rows, ["name", "kind", "needs", "options", "min_per_class",
                             "description"]))
    click.echo("\n--scorer NAME for one, repeatable; 'recommended' (the default) for the "
               "one marked *; 'ensemble:a,b,c' to combine chosen estimators; 'all' for every "
               "estimator.", err=True)


@cli.group()
def hub():
    """Find ONNX models and checkpoints to export on the Hugging Face hub."""


@hub.command(name="search")
@click.argument("query", required=False, default="")
@click.option("--library", type=click.Choice(["onnx", "transformers", "timm"]),
              default="onnx", show_default=True,
              help="Hub library tag: ONNX files only, or also checkpoints to export on add.")
@click.option("--task", help="Pipeline tag, e.g. image-classification.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--add", "add_them", is_flag=True, help="Index every model found.")
@click.option("--allow-pickle", is_flag=True,
              help="Also list (and add) checkpoints with only pickled weights.")
@index_option
@json_option
def hub_search(query, library, task, limit, add_them, allow_pickle, index_path, as_json):
    """List hub models with ONNX files or checkpoints to export; --add indexes them."""
    from . import zoo

    rows = zoo.hub_search(query, library=library, task=task, limit=limit,
                          allow_pickle=allow_pickle)
    if as_json and not add_them:
        _dump_json(rows)
        return
    if not as_json:
        for r in rows:
            r["files"] = len(r.get("onnx_files") or [])
            r["export"] = "yes" if r.get("export") else ""
        click.echo(_table(rows, ["repo", "downloads", "likes", "license", "pipeline", "files",
                                 "export"])
                   if rows else "no hub models with ONNX files or checkpoints match")
    if add_them and rows:
        added = zoo.add([f"hf://{r['repo']}" for r in rows], index=index_path,
                        allow_pickle=allow_pickle)
        if as_json:
            _dump_json([a.to_dict() for a in added])
        else:
            for a in added:
                click.echo(f"{a.status:9} {a.name}", err=True)


@cli.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback shows the zoo to the "
              "network, with no login.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--data", "data", multiple=True,
              type=click.Path(exists=True, file_okay=False),
              help="Folder whose data sets the search page may read; repeatable. "
              "Nothing outside these folders is read.")
@click.option("--read-only", is_flag=True,
              help="Never write the index: searches the cache cannot answer are refused.")
@click.option("--max-upload", type=click.IntRange(min=1), default=200, show_default=True,
              metavar="MB", help="Largest upload (and zip once unpacked), in MB.")
def serve(index_path, host, port, data, read_only, max_upload):
    """Serve the zoo as web pages and JSON: browse, search, history (needs zooindex[web])."""
    from .errors import DependencyError
    from .index import Index

    try:
        import uvicorn

        from .web.app import create_app
    except ImportError as exc:
        raise DependencyError("the web page needs its extra: pip install 'zooindex[web]' "
                              f"({exc.name} is missing)", package=exc.name) from None
    with Index(index_path, create=False, read_only=True if read_only else None) as idx:
        path, models = idx.path, len(idx.catalogue.models())
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback:
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can "
                   "browse the zoo and start searches; there is no login", err=True)
    app = create_app(path, data=data, read_only=read_only,
                     max_upload=max_upload * 1000 * 1000,
                     allowed_hosts=["127.0.0.1", "localhost"] if host != "::1" and loopback
                     else None)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {path} ({models} models{', read-only' if read_only else ''}) at "
               f"http://{shown}:{port}/ ; Ctrl-C stops", err=True)
    # a page still streaming a search's progress must not hold up Ctrl-C for long
    uvicorn.run(app, host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=3)


def _uses(ranking, option: str) -> bool:
    """Does any score of the ranking depend on this option (``metric``, ``dim``)?"""
    from .estimators.combine import depends_on

    return depends_on(ranking.scorers, option)


def _scorer_label(name: str, ranking) -> str:
    """A scorer's name, with the members a combination used: 'ensemble (logme, nleep)'."""
    members = ranking.members.get(name)
    if members is None or name.endswith(":" + ",".join(members)):
        return name
    return f"{name} ({', '.join(members)})"


def main(argv=None) -> None:
    """Entry point: run the CLI, turning zooindex errors into one-line messages.

    Ctrl-C (SIGINT) and SIGTERM stop the work at once: the batches running are
    abandoned, nothing half-written stays in the index, and the exit code is 130 or 143
    as a shell expects.
    """
    import signal

    def terminate(signum, frame):
        raise _Terminated()

    previous = None
    with _suppress_value_error():  # not the main thread: leave signals alone
        previous = signal.signal(signal.SIGTERM, terminate)
    try:
        cli.main(args=argv, prog_name="zooindex", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _stop_now(130, "\nInterrupted; nothing half-written was kept.")
    except _Terminated:
        _stop_now(143, "Terminated; nothing half-written was kept.")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        from .errors import ZooIndexError

        if os.environ.get(DEBUG_ENV) or not isinstance(exc, ZooIndexError):
            raise
        _real_stderr()
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_now(code: int, message: str) -> None:
    """Exit at once after a signal. The index was closed and what a stopped search had
    staged was removed while the exception unwound; a model still inside onnxruntime
    is abandoned rather than waited for (its batch ends at the next node), and so is one
    still loading, which may have fd 2 redirected: it is pointed back first."""
    _real_stderr()
    click.echo(message, err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _real_stderr() -> None:
    """Point fd 2 back at the real stderr before a last message, in case a thread this
    process abandons (a model loading) has it redirected; imports nothing new."""
    runtime = sys.modules.get("zooindex.runtime")
    if runtime is not None:
        runtime.restore_stderr()


class _Terminated(BaseException):
    """SIGTERM, raised where the main thread is, to unwind like Ctrl-C does."""


def _suppress_value_error():
    import contextlib

    return contextlib.suppress(ValueError)


if __name__ == "__main__":
    main()
