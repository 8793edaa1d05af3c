"""The evidence base's fine-tuning ground truth (benchmarks/evidence/finetune.py), on a tiny
network of the paper's recipe and a synthetic target it can learn."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evidence import finetune  # noqa: E402
from models.nets import Widths, build_net  # noqa: E402

# a short, fast recipe for a tiny net; the base's own is finetune.RECIPE
RECIPE = {"optimizer": "adam", "lr_body": 1e-3, "lr_head": 1e-2, "batch_size": 32,
          "steps": 40, "seed": 0}


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes: a bright horizontal bar in the top, middle or bottom third, on noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(y):
        row = 3 + 9 * c + rng.integers(0, 3)
        x[i, row:row + 3, 4:24] = 255
    return x, y


@pytest.fixture
def target():
    x_train, y_train = bars(150, seed=1)
    x_test, y_test = bars(60, seed=2)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


@pytest.fixture
def source_net():
    torch.manual_seed(0)
    return build_net(Widths(conv=(4,), dense=16), 5)  # a "source" with five classes


def test_fine_tuning_learns_a_separable_target_and_leaves_the_source_alone(target,
                                                                          source_net):
    before = {k: v.clone() for k, v in source_net.state_dict().items()}
    right, seconds = finetune.run_unit(source_net, target, RECIPE)
    assert right.shape == (60,) and right.dtype == bool
    assert right.mean() > 0.9          # chance is 1/3
    assert seconds > 0
    # the new head has the target's three classes; the source net is untouched
    assert source_net.logits.out_features == 5
    for k, v in source_net.state_dict().items():
        assert torch.equal(v, before[k])
    # seeded: the same unit again gives the same images right
    again, _ = finetune.run_unit(source_net, target, RECIPE)
    np.testing.assert_array_equal(right, again)


def test_every_weight_moves_the_body_slower_than_the_head(target, source_net):
    tuned = finetune.replace_head(copy.deepcopy(source_net), 3, seed=0)
    start = {k: v.clone() for k, v in tuned.state_dict().items()}
    finetune.fine_tune(tuned, target["x_train"], target["y_train"], **RECIPE)
    moved = {k: float((v - start[k]).abs().max()) for k, v in tuned.state_dict().items()}
    assert all(m > 0 for m in moved.values())            # the body is not frozen
    assert moved["conv1.weight"] < moved["logits.weight"]


def test_units_are_cached_and_recomputed_only_when_stale(tmp_path, target, source_net):
    loads = []

    def load_net():
        loads.append(1)
        return source_net

    def get(sha="a" * 64, recipe=RECIPE, compute=True):
        return finetune.get_or_compute(tmp_path, "tiny", sha, "bars", target, load_net,
                                       recipe=recipe, compute=compute)

    first = get()
    assert not first["cached"] and len(loads) == 1
    assert (tmp_path / "finetune" / "tiny__bars.npz").exists()
    second = get()
    assert second["cached"] and len(loads) == 1          # not recomputed
    np.testing.assert_array_equal(second["correct"], first["correct"])
    assert second["accuracy"] == pytest.approx(first["correct"].mean())
    # a retrained model file or another recipe makes the unit stale
    assert get(sha="b" * 64, compute=False) is None
    assert get(recipe={**RECIPE, "steps": 41}, compute=False) is None
    assert len(loads) == 1
    assert not get(sha="b" * 64)["cached"] and len(loads) == 2


def test_the_subset_names_paper_models_and_base_targets():
    from evidence.sources import TARGETS
    from models.recipes import PAPER

    assert set(finetune.MODELS) <= {r.name for r in PAPER}
    assert set(finetune.TARGETS) <= {s.name for s in TARGETS}
    assert len({t.split("-")[0] for t in finetune.TARGETS}) >= 3   # three data sets at least
