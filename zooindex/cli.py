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


index_option = click.option(
    "--index", "index_path", type=click.Path(dir_okay=False), envvar="ZOOINDEX_INDEX",
    help="Index database [env ZOOINDEX_INDEX; default: index.db in the user data dir].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
device_option = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]),
                             default="auto", show_default=True,
                             help="Where onnxruntime runs the models (auto: CUDA when a GPU "
                             "is really there).")


def filter_options(func):
    """--tag/--source/--max-params/--name: narrow which indexed models take part."""
    for option in reversed([
        click.option("--tag", "filter_tags", multiple=True, callback=_tags,
                     metavar="KEY=VALUE", help="Only models with this tag; repeatable."),
        click.option("--source", "filter_source",
                     type=click.Choice(["local", "hf", "manifest"]),
                     help="Only models from this source."),
        click.option("--max-params", type=int, help="Only models with at most N parameters."),
        click.option("--name", "filter_name", metavar="GLOB",
                     help="Only models whose name matches, e.g. 'fashion-*'."),
    ]):
        func = option(func)
    return func


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
@click.option("--input", "input_name", help="For models with several inputs: the one that "
              "takes the data (the others get default values).")
@click.option("--manifest", help="Also add every model of an ONNX Model Zoo manifest "
              "(ONNX_HUB_MANIFEST.json: a file, folder or URL).")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Where downloaded models go [env ZOOINDEX_CACHE].")
@index_option
@json_option
def add(paths, name, layer, tags, replace, scale, mean, std, layout, input_name, manifest,
        cache_dir, index_path, as_json):
    """Index ONNX models: files, folders (recursive), hf://OWNER/REPO[@REV][/FILE.onnx]."""
    from . import zoo

    if not paths and not manifest:
        raise click.UsageError("give model files, folders, hf:// references or --manifest")
    results = zoo.add(list(paths), index=index_path, name=name, layer=layer, tags=tags,
                      replace=replace, scale=scale, mean=mean, std=std, layout=layout,
                      input=input_name, manifest=manifest, cache_dir=cache_dir)
    if as_json:
        _dump_json([r.to_dict() for r in results])
        return
    for r in results:
        layer_note = f"default layer {r.default_layer}" if r.default_layer else \
            "no default layer: search it with --layer"
        click.echo(f"{r.status:9} {r.name}  ({layer_note})")


@cli.command()
@click.argument("model")
@index_option
@json_option
def layers(model, index_path, as_json):
    """List a model's candidate layers; * marks the default."""
    from . import zoo

    rows = zoo.layers(model, index=index_path)
    if as_json:
        _dump_json(rows)
        return
    for r in rows:
        r["default"] = "*" if r["is_default"] else ""
        r["shape"] = "x".join(str(s) for s in r["shape"])
    click.echo(_table(rows, ["default", "name", "op", "kind", "dim", "shape"]))


@cli.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--layer", default=None,
              help="'default' (last hidden dense layer), a tensor name, or 'all'.")
@click.option("--dim", "-D", type=int, default=10, show_default=True,
              help="PCA components before scoring.")
@click.option("--metric", type=click.Choice(["cosine", "euclidean", "sqeuclidean"]),
              default="cosine", show_default=True, help="Distance of the silhouette.")
@click.option("--scorer", "scorers", multiple=True, default=["silhouette"],
              show_default=True, help="Estimator(s), repeatable, or 'all'; ranked by the "
              "first. See `zooindex scorers`.")
@click.option("--classes", help="Keep these target classes: '0-4', '3,7,9', 'cat,dog'.")
@click.option("--limit", type=int, help="Stratified, seeded subsample of N samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split", type=click.Choice(["train", "test"]),
              help="Split, for formats that have splits.")
@click.option("--top", type=int, help="Show only the K best.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@device_option
@click.option("--model", "models", multiple=True, help="Rank only these models.")
@filter_options
@index_option
@json_option
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV on stdout.")
@click.option("--refresh", is_flag=True, help="Re-index models whose file changed since "
              "they were added, instead of skipping them.")
def search(target, layer, dim, metric, scorers, classes, limit, seed, split, top,
           batch_size, device, models, filter_tags, filter_source, max_params, filter_name,
           index_path, as_json, as_csv, refresh):
    """Rank every indexed model for a labeled TARGET (neuralRank)."""
    from .ranking import search as rank
    from .target import parse_classes

    ranking = rank(
        target, index=index_path, layer=layer, dim=dim, metric=metric, scorers=scorers,
        classes=parse_classes(classes) if classes else None, limit=limit, seed=seed,
        split=split, top=top, batch_size=batch_size, device=device,
        filter=_filter(filter_tags, filter_source, max_params, filter_name, models),
        progress=None, refresh=refresh)
    rows = []
    for r in ranking.results:
        row = {"rank": r.rank, "model": r.model, "score": r.score, "layer": r.layer,
               "dim": r.dim, "components": r.components, "seconds": round(r.seconds, 3),
               "cached": r.cached, "provider": r.provider, "status": r.status,
               "reason": r.reason}
        for name in ranking.scorers:
            row[name] = r.scores.get(name)
        rows.append(row)
    if as_json:
        _dump_json(rows)
    elif as_csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["rank"])
        writer.writeheader()
        writer.writerows(rows)
    else:
        ok = [r for r in rows if r["status"] == "ok"]
        extra = ranking.scorers[1:]
        headers = ["rank", "model", "score", *extra, "layer", "dim", "seconds"]
        click.echo(f"target {ranking.target}: {ranking.n} samples, {len(ranking.classes)} "
                   f"classes; {ranking.scorers[0]}, D={dim}, {metric}", err=True)
        if ok:
            click.echo(_table(ok, headers))
        for r in rows:
            if r["status"] != "ok":
                click.echo(f"skipped {r['model']}: {r['reason']}", err=True)
        ran = [r for r in ranking.ranked if not r.cached]
        providers = sorted({r.provider for r in ran if r.provider})
        click.echo(f"{len(ranking.ranked)} ranked, {len(ranking.skipped)} skipped in "
                   f"{ranking.seconds:.1f} s; {len(ranking.ranked) - len(ran)} from the cache"
                   + (f", {len(ran)} run on {', '.join(providers)}" if providers else ""),
                   err=True)
    for note in ranking.notes:
        click.echo(f"note: {note}", err=True)


@cli.command()
@click.option("--train", type=click.Path(exists=True), help="Training split of the target.")
@click.option("--test", type=click.Path(exists=True), help="Test split of the target.")
@click.option("--target", type=click.Path(exists=True),
              help="One target, split with --test-size.")
@click.option("--test-size", type=float, help="Share of --target held out for testing.")
@click.option("--scorer", "scorers", multiple=True, default=["silhouette"],
              show_default=True, help="Estimator(s), repeatable, or 'all'.")
@click.option("--layer", default=None, help="'default', a tensor name, or 'all'.")
@click.option("--dim", "-D", type=int, default=10, show_default=True)
@click.option("--metric", type=click.Choice(["cosine", "euclidean", "sqeuclidean"]),
              default="cosine", show_default=True)
@click.option("--classes", help="Keep these target classes: '0-4', '3,7,9'.")
@click.option("--limit", type=int, help="Stratified subsample of the test split.")
@click.option("--train-limit", type=int, help="Stratified subsample of the training split.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=int, default=256, show_default=True)
@device_option
@click.option("--model", "models", multiple=True, help="Evaluate only these models.")
@index_option
@json_option
def evaluate(train, test, target, test_size, scorers, layer, dim, metric, classes, limit,
             train_limit, seed, batch_size, device, models, index_path, as_json):
    """Measure real transfer accuracy and how well the ranking predicts it."""
    from . import evaluation
    from .target import parse_classes

    ev = evaluation.evaluate(
        train=train, test=test, target=target, test_size=test_size, index=index_path,
        scorers=scorers, layer=layer, dim=dim, metric=metric,
        classes=parse_classes(classes) if classes else None, limit=limit,
        train_limit=train_limit, seed=seed, batch_size=batch_size, device=device,
        models=list(models) or None, progress=None)
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
    for r in rows:
        if r["status"] != "ok":
            skipped = next(m for m in ev.models if m.model == r["model"])
            click.echo(f"skipped {r['model']}: {skipped.reason}", err=True)
    click.echo("")
    agree = [{"scorer": k, **v} for k, v in ev.agreement.items()]
    click.echo(_table(agree, ["scorer", "tau_w", "tau", "spearman", "top1", "seconds"]))
    click.echo(f"\nranking took {ev.search_seconds:.1f} s; retraining the logits of every "
               f"model took {ev.transfer_seconds:.1f} s", err=True)


@cli.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="report.html (self-contained page) or report.png (one figure).")
@click.option("--top", type=int, default=5, show_default=True, help="Models to plot.")
@click.option("--layer", default=None, help="'default' or a tensor name.")
@click.option("--dim", "-D", type=int, default=10, show_default=True)
@click.option("--dims", callback=_int_list, default="2,3,5,10,20,50,100", show_default=True,
              help="D values of the score-vs-D curves.")
@click.option("--metric", type=click.Choice(["cosine", "euclidean", "sqeuclidean"]),
              default="cosine", show_default=True)
@click.option("--classes", help="Keep these target classes: '0-4', '3,7,9'.")
@click.option("--limit", type=int, help="Stratified, seeded subsample of N samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--split", type=click.Choice(["train", "test"]))
@click.option("--max-points", type=int, default=2000, show_default=True,
              help="Points per 3D scatter.")
@device_option
@filter_options
@index_option
def report(target, out, top, layer, dim, dims, metric, classes, limit, seed, split,
           max_points, device, filter_tags, filter_source, max_params, filter_name,
           index_path):
    """Write a report: ranking, score-vs-D curves, 3D PCA scatter of the top models."""
    from .report import report as write_report
    from .target import parse_classes

    flt = _filter(filter_tags, filter_source, max_params, filter_name)
    names = None
    if flt is not None:
        from . import zoo

        names = [m["name"] for m in zoo.ls(index=index_path, filter=flt)]
    path = write_report(target, out=out, index=index_path, top=top, layer=layer, dim=dim,
                        dims=dims, metric=metric,
                        classes=parse_classes(classes) if classes else None, limit=limit,
                        seed=seed, split=split, device=device, max_points=max_points,
                        models=names)
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
    click.echo(_table(rows, ["name", "status", "params", "input", "layer", "dim", "source",
                             "tags"])
               if rows else "the index is empty; add models with `zooindex add`")


@cli.command(name="check")
@click.option("--fix", is_flag=True, help="Remove orphaned and damaged cache entries.")
@index_option
@json_option
def check_cmd(fix, index_path, as_json):
    """Check the index: SQLite integrity, model files and hashes, orphaned cache rows."""
    from .check import check

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
def show(model, index_path):
    """Show everything the index holds about MODEL (JSON)."""
    from . import zoo

    _dump_json(zoo.show(model, index=index_path))


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
    from .index import opened

    with opened(index_path, create=False) as idx:
        stats = idx.cache_stats()
    if as_json:
        _dump_json(stats)
        return
    click.echo(f"{stats['activations']} cached activations, "
               f"{stats['activation_bytes'] / 1e6:.1f} MB of {stats['limit_bytes'] / 1e6:.0f} MB "
               f"in {stats['folder']}; {stats['scores']} scores; {stats['targets']} targets")


@cli.command()
@json_option
def scorers(as_json):
    """List the transferability estimators."""
    from .estimators import available

    rows = [{"name": e.name, "needs": "classifier output" if e.needs_probs else "features",
             "options": ",".join(e.params), "description": e.description}
            for e in available()]
    if as_json:
        _dump_json(rows)
        return
    click.echo(_table(rows, ["name", "needs", "options", "description"]))


@cli.group()
def hub():
    """Find ONNX models on the Hugging Face hub."""


@hub.command(name="search")
@click.argument("query", required=False, default="")
@click.option("--library", default="onnx", show_default=True, help="Hub library tag.")
@click.option("--task", help="Pipeline tag, e.g. image-classification.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--add", "add_them", is_flag=True, help="Index every model found.")
@index_option
@json_option
def hub_search(query, library, task, limit, add_them, index_path, as_json):
    """List hub models that carry ONNX files; --add indexes them."""
    from . import hub as hub_mod

    rows = hub_mod.search(query, library=library, task=task, limit=limit)
    if as_json and not add_them:
        _dump_json(rows)
        return
    if not as_json:
        for r in rows:
            r["files"] = len(r.get("onnx_files") or [])
        click.echo(_table(rows, ["repo", "downloads", "likes", "license", "pipeline", "files"])
                   if rows else "no hub models with ONNX files match")
    if add_them and rows:
        from . import zoo

        added = zoo.add([f"hf://{r['repo']}" for r in rows], index=index_path)
        if as_json:
            _dump_json([a.to_dict() for a in added])
        else:
            for a in added:
                click.echo(f"{a.status:9} {a.name}", err=True)


def main(argv=None) -> None:
    """Entry point: run the CLI, turning zooindex errors into one-line messages."""
    try:
        cli.main(args=argv, prog_name="zooindex", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        from .errors import ZooIndexError

        if os.environ.get(DEBUG_ENV) or not isinstance(exc, ZooIndexError):
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
