"""The whole reproduction: measure what is not cached yet, then write RESULTS.md."""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import data as zoo_data
from .common import ranks
from .figures import draw_figure2, draw_figure3
from .measure import Measurements, available_models, layer_scores, manifest_entries, \
    measure_transfer
from .paper import EXTRA_SEEDS, LITE, NINE, WIDE_512, seeded
from .protocols import LOGITS_SEEDS, MAIN, SENSITIVITY
from . import document

HERE = Path(__file__).resolve().parent.parent
DEFAULT_ZOO = HERE / "zoo"
DEFAULT_OUT = HERE / "RESULTS.md"
DEFAULT_CACHE = HERE / ".cache"
DEFAULT_DATA = zoo_data.DEFAULT_DATA_DIR
LOW = [0, 1, 2, 3, 4]
HIGH = [5, 6, 7, 8, 9]
SEEDED = [seeded(m, k) for k in EXTRA_SEEDS for m in NINE]


@dataclass
class Settings:
    train_limit: int | None = None      # training images for the protocols (None: all)
    layer_limit: int | None = 1_000     # test images for Table 2's layer sweep
    scatter_limit: int = 1_000
    dims: tuple = (2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 75, 100)
    seed: int = 0
    draws: int = 2_000                  # bootstrap resamples per interval
    notes: list = field(default_factory=list)


def data_sources(data_dir) -> dict[str, Path]:
    data_dir = Path(data_dir)
    return {"mnist": data_dir / "mnist", "fashion": data_dir / "fashion-mnist"}


def reproduce(zoo=DEFAULT_ZOO, data=DEFAULT_DATA, out=DEFAULT_OUT, *, index=None,
              cache_dir=DEFAULT_CACHE, settings: Settings | None = None,
              sources: dict | None = None, log=print) -> Path:
    """Measure everything on the models that exist and write ``out`` with its figures.

    ``sources`` maps ``mnist`` and ``fashion`` to targets with train and test splits
    (default: the IDX folders under ``data``).
    """
    import zooindex

    s = settings or Settings()
    out = Path(out)
    figures = out.parent / "figures"
    sources = sources or data_sources(data)
    models = available_models(zoo)
    started = time.perf_counter()
    tmp = None
    if index is None:
        tmp = tempfile.TemporaryDirectory(prefix="zooindex-reproduce-")
        index = Path(tmp.name) / "index.db"
    store = Measurements(Path(cache_dir) / "reproduce-measurements.json" if cache_dir else None)
    try:
        if models:
            zooindex.add(list(models.values()), index=index)
        names = set(models)
        log(f"{len(models)} models in {zoo}: {', '.join(sorted(models)) or '(none)'}")

        def target(name, split, limit=None, classes=LOW):
            return zooindex.load_target(str(sources[name]), split=split, classes=classes,
                                        limit=limit, seed=s.seed)

        tests = {t: target(t, "test") for t in ("fashion", "mnist")}
        trains = {t: target(t, "train", s.train_limit) for t in ("fashion", "mnist")}
        log("Table 2: layer sweep, MNIST 0-4")
        t2 = layer_scores([m for m in NINE if m in names],
                          target("mnist", "test", s.layer_limit), index=index, store=store,
                          seed=s.seed, log=log)
        plan = {  # (target, models, variants), most important first
            "fashion": [(NINE, MAIN + LOGITS_SEEDS + SENSITIVITY),
                        (SEEDED + LITE + WIDE_512, MAIN)],
            "mnist": [(NINE + LITE, MAIN)],  # the seeds' intervals are Fashion 0-4's
        }
        records = {}
        for t, groups in plan.items():
            log(f"Transfer and scores, {'Fashion' if t == 'fashion' else 'MNIST'} 0-4")
            records[t] = {}
            for group, variants in groups:
                records[t].update(measure_transfer(
                    [m for m in group if m in names], train=trains[t], test=tests[t],
                    index=index, store=store, variants=variants, seed=s.seed, log=log))
        nine_scores = {m: records["fashion"][m].score for m in NINE if m in records["fashion"]}
        order = sorted(nine_scores, key=lambda m: -nine_scores[m])
        log("Figure 2: score against D")
        fig2 = draw_figure2(order, ranks(nine_scores), index, tests["fashion"],
                            figures / "figure2-score-vs-d.png", s.dims, s.seed)
        log("Figure 3: PCA scatter")
        fig3, fig3_models = draw_figure3(order, index,
                                         target("fashion", "test", s.scatter_limit),
                                         figures / "figure3-pca.png", s.seed)
        text = document.write(
            zoo=zoo, models=models, entries=manifest_entries(zoo), t2=t2, records=records,
            tests=tests, trains=trains, fig2=fig2, fig3=fig3, fig3_models=fig3_models,
            out=out, settings=s, seconds=time.perf_counter() - started)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        return out
    finally:
        if tmp is not None:
            tmp.cleanup()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m models.reproduce",
        description="Reproduce the neuralRank paper's tables and figures on the zoo.")
    parser.add_argument("--zoo", default=str(DEFAULT_ZOO), help="folder of the zoo's .onnx files")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="folder with mnist/ and fashion-mnist/ (IDX files)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the markdown file to write")
    parser.add_argument("--index", default=None,
                        help="index to use (default: a fresh temporary one, so that the "
                             "timings are those of a cold search)")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="training images for the transfer protocols (stratified "
                             "subsample; default: the whole training split)")
    parser.add_argument("--layer-limit", type=int, default=1_000,
                        help="test images for the layer sweep of Table 2")
    parser.add_argument("--draws", type=int, default=2_000,
                        help="bootstrap resamples per interval (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true",
                        help="measure every model again instead of reusing "
                             "models/.cache/reproduce-measurements.json")
    args = parser.parse_args(argv)
    settings = Settings(train_limit=args.train_limit, layer_limit=args.layer_limit,
                        draws=args.draws)
    path = reproduce(args.zoo, args.data, args.out, index=args.index, settings=settings,
                     cache_dir=None if args.no_cache else DEFAULT_CACHE)
    print(f"wrote {path}")
