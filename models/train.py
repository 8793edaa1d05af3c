"""Training and evaluating one zoo network, as the paper does: Adam, lr 0.001, cross-entropy.

Runs are reproducible: ``torch.manual_seed`` fixes the initial weights and dropout masks,
and a numpy generator of the same seed fixes the order of the training samples. Images
stay uint8 until a batch is taken, so memory stays at one copy of the data set.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .recipes import BATCH_SIZE, LEARNING_RATE


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], the zoo's input convention."""
    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def train(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int,
          batch_size: int = BATCH_SIZE, lr: float = LEARNING_RATE,
          desc: str = "train") -> float:
    """Train ``net`` in place on uint8 images ``x`` and labels ``y``; returns seconds taken."""
    if len(x) == 0 or len(x) != len(y) or epochs < 1:
        raise ValueError(f"need images with one label each and at least one epoch; got "
                         f"{len(x)} images, {len(y)} labels, {epochs} epochs")
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    steps = (len(x) + batch_size - 1) // batch_size
    net.train()
    start = time.perf_counter()
    with tqdm(total=epochs * steps, desc=desc, unit="batch", leave=False, file=sys.stderr,
              mininterval=0.5 if sys.stderr.isatty() else 30.0) as bar:
        for epoch in range(epochs):
            order = order_rng.permutation(len(x))
            for step in range(steps):
                batch = order[step * batch_size:(step + 1) * batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(as_input(x[batch])), labels[batch])
                loss.backward()
                optimiser.step()
                bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    net.eval()
    return time.perf_counter() - start


@torch.no_grad()
def predict(net: torch.nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Predicted labels of uint8 images ``x``, with the network in eval mode (no dropout)."""
    net.eval()
    out = [net(as_input(x[i:i + batch_size])).argmax(dim=1).numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def accuracy(net: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` whose predicted label equals ``y``."""
    return float(np.mean(predict(net, x) == np.asarray(y)))
