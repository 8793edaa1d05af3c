"""Reproduce the neuralRank paper's Tables 2-6 and Figures 2-3 on this project's zoo.

    python -m models.reproduce [--zoo models/zoo] [--data DIR] [--out models/RESULTS.md]

Everything goes through zooindex's public API (``add``, ``search``, ``features``,
``layers``) as a user would run it, into a fresh temporary index unless ``--index`` names
one, and the transfer accuracies through :mod:`zooindex.transfer` (the paper's logits
protocol and the linear probe) on features from ``zooindex.features``. Each table prints
the paper's numbers beside ours, and Kendall's tau between scores and accuracies with
intervals over test images and training seeds.

One module per part: ``paper`` (the paper's numbers and inconsistencies), ``measure``
(the cached measurements), ``agreement`` (taus and intervals), ``tables`` (shared table
builders), ``table2``, ``table34``, ``table5``, ``table6``, ``protocols``, ``anchors``,
``figures``, ``cost``, ``document`` (RESULTS.md) and ``run`` (the command).

The zoo may be incomplete (it takes hours to train on a small machine): the script uses
the models that exist and marks the others as missing. What each model measured is kept
under ``models/.cache/`` keyed by the model's content hash, the targets' fingerprints and
the protocol's parameters, so a later run measures only what is new.
"""

from .common import MISSING, correlation, markdown_table, ranks
from .cost import cost_table
from .measure import (SCORES_VERSION, Measurements, Record, Variant, available_models,
                      evaluate_models, layer_scores, manifest_entries, measure_transfer,
                      paper_layers, source_accuracy)
from .paper import (LITE, NINE, TABLE2, TABLE3, TABLE4, TABLE5, TABLE6, TWINS_1024,
                    WIDE_512, inconsistencies, paper_name, seeded)
from .run import (DEFAULT_CACHE, DEFAULT_DATA, DEFAULT_OUT, DEFAULT_ZOO, HIGH, LOW, Settings,
                  data_sources, main, reproduce)
from .table2 import table2
from .tables import agreement_table, score_accuracy_table

__all__ = [name for name in dir() if not name.startswith("_")]
