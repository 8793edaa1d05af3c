"""Small synthetic targets and zoos built in code, shared by the tests."""

import numpy as np


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


def selector(dims, width=8):
    """Weights that copy input dims ``dims`` into a hidden layer of ``len(dims)`` units."""
    w = np.zeros((width, len(dims)), dtype=np.float32)
    for j, d in enumerate(dims):
        w[d, j] = 1.0
    return w


def three_model_zoo(root):
    """good (sees the informative dims), noise (sees none), mixed (one of them), a target.

    Returns {"folder", "target", "index", "x", "y"}; nothing is indexed yet.
    """
    from support.onnx_factory import linear_features, save

    folder = root / "zoo"
    folder.mkdir()
    save(linear_features(selector([0, 1]), classes=3), folder / "good.onnx")
    save(linear_features(selector([4, 5, 6, 7]), classes=3), folder / "noise.onnx")
    save(linear_features(selector([0, 5, 6, 7]), classes=3), folder / "mixed.onnx")
    x, y = clustered()
    target = root / "target.npz"
    np.savez(target, x=x, y=y)
    return {"folder": folder, "target": target, "index": root / "index.db", "x": x, "y": y}


def schema2_blob(array: np.ndarray) -> bytes:
    """An activation entry as schema 2 stored it in the database (for migration tests):
    ``np.savez`` of the shape, the bit-packed mask of the non-zeros, and their values."""
    import io

    a = np.ascontiguousarray(array)
    mask = a != 0
    buf = io.BytesIO()
    np.savez(buf, shape=np.asarray(a.shape, dtype=np.int64), mask=np.packbits(mask.ravel()),
             values=a[mask])
    return buf.getvalue()


def race_zoo(root):
    """Eight models for a search on a budget (one sees both informative dims, one sees
    one, six see noise), indexed, and a 3-class target of 3 x 64 samples: enough models
    for a race to drop some. Returns {"folder", "target", "index", "n"}."""
    from support.onnx_factory import linear_features, save

    import zooindex

    folder = root / "zoo"
    folder.mkdir()
    save(linear_features(selector([0, 1]), classes=3), folder / "good.onnx")
    save(linear_features(selector([0, 5]), classes=3), folder / "half.onnx")
    for i, dims in enumerate(([2, 3], [4, 5], [6, 7], [2, 6], [3, 7], [4, 6])):
        save(linear_features(selector(dims), classes=3, seed=i), folder / f"noise{i}.onnx")
    x, y = clustered(n_per_class=64, spread=0.5)
    target = root / "target.npz"
    np.savez(target, x=x, y=y)
    index = root / "index.db"
    zooindex.add(folder, index=index)
    return {"folder": folder, "target": target, "index": index, "n": len(y)}
