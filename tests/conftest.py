import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

# tests never use the user's index or cache
os.environ.pop("ZOOINDEX_INDEX", None)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.delenv("ZOOINDEX_INDEX", raising=False)


def clustered(n_per_class=40, classes=3, informative=2, noise_dims=6, spread=0.3, seed=0):
    """Inputs in R^(informative + noise_dims): the first dims carry the class."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(1.0, 4.0, size=(classes, informative))
    xs, ys = [], []
    for k in range(classes):
        xs.append(np.hstack([centres[k] + spread * rng.normal(size=(n_per_class, informative)),
                             rng.uniform(0, 3, size=(n_per_class, noise_dims))]))
        ys.append(np.full(n_per_class, k))
    return np.vstack(xs).astype(np.float32), np.concatenate(ys)
