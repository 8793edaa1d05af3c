"""Training and evaluating one zoo network: cross-entropy, learning rate 0.001, seeded, resumable.

Runs are reproducible: ``torch.manual_seed`` fixes the dropout masks (the initial weights
are drawn by the caller, after the same seeding), and a numpy generator of the same seed
fixes the order of the training samples, one permutation per epoch. Images stay uint8
until a batch is taken, so memory stays at one copy of the data set.

A run can be interrupted and resumed exactly: every so often it writes a checkpoint
holding the weights, the optimizer's state, both random generators' states, the epoch's
sample order and the position in it, and a resumed run continues with the very next batch
(on the CPU, with the same thread count, the weights come out bit for bit as without the
interruption). The last checkpoint holds the finished state: since no learning-rate
schedule depends on the length of the run, a longer run of the same recipe continues
from it exactly as if it had been asked for from the start. Training uses the GPU when
torch sees one.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .recipes import BATCH_SIZE, LEARNING_RATE, Training

CHECKPOINT_VERSION = 1
CHECKPOINT_SECONDS = 120.0   # at most this long between checkpoints (plus one batch)


def device() -> torch.device:
    """The GPU when torch sees one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], the zoo's input convention."""
    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def optimizer(kind: str, params, lr: float) -> torch.optim.Optimizer:
    """``adam`` (betas 0.9/0.999, eps 1e-8), ``sgd`` (plain), or ``momentum`` (SGD, 0.9)."""
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if kind == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    raise ValueError(f"unknown optimizer '{kind}'; choose from: adam, sgd, momentum")


@dataclass
class Run:
    """What a call of :func:`train` did: total training seconds and steps so far."""

    seconds: float
    steps: int
    total_steps: int
    resumed_at: int = 0          # the step a checkpoint resumed from (0: a fresh start)

    @property
    def finished(self) -> bool:
        return self.steps >= self.total_steps


def train(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int | None = None,
          seed: int = 0, batch_size: int = BATCH_SIZE, lr: float = LEARNING_RATE,
          desc: str = "train", *, training: Training | None = None,
          checkpoint: str | Path | None = None,
          checkpoint_seconds: float = CHECKPOINT_SECONDS,
          checkpoint_steps: int | None = None, stop_after: int | None = None,
          on: torch.device | str | None = None) -> Run:
    """Train ``net`` in place on uint8 images ``x`` and labels ``y``.

    Give either ``training`` (optimizer, learning rate, batch size, epochs) or the older
    ``epochs``/``batch_size``/``lr`` (Adam). With ``checkpoint``, the run resumes from
    that file when it belongs to the same run (same training, seed and data size) and
    writes it every ``checkpoint_seconds`` (or every ``checkpoint_steps`` steps), when it
    stops and when it ends (so that a longer run can start from there; a checkpoint past
    this run's length is ignored). ``stop_after`` ends the call
    after that many steps of this call (an interruption, for tests and time-boxed runs).
    The network ends in eval mode on the CPU.
    """
    if training is None:
        if epochs is None:
            raise ValueError("give training=Training(...) or epochs")
        training = Training("adam", lr, batch_size, epochs)
    if len(x) == 0 or len(x) != len(y) or training.epochs < 1:
        raise ValueError(f"need images with one label each and at least one epoch; got "
                         f"{len(x)} images, {len(y)} labels, {training.epochs} epochs")
    dev = torch.device(on) if on is not None else device()
    net.to(dev)
    torch.manual_seed(seed)
    order_rng = np.random.default_rng(seed)
    opt = optimizer(training.optimizer, net.parameters(), training.lr)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(dev)
    per_epoch = math.ceil(len(x) / training.batch_size)
    total = training.epochs * per_epoch
    # the run's trajectory does not depend on how many epochs it will last (no schedule),
    # so a checkpoint of a shorter or longer run of the same recipe is a valid start
    identity = {"version": CHECKPOINT_VERSION, "optimizer": training.optimizer,
                "lr": training.lr, "batch_size": training.batch_size, "seed": seed,
                "samples": len(x), "classes": int(np.max(y)) + 1}
    state = _load(checkpoint, identity, dev)
    if state is not None and state["steps"] > total:
        tqdm.write(f"ignoring checkpoint {checkpoint}: it is {state['steps']} steps in, "
                   f"past this run's {total}", file=sys.stderr)
        state = None
    done, order, seconds_before = 0, None, 0.0
    if state is not None:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        order_rng.bit_generator.state = state["order_rng"]
        order = state["order"].numpy()
        done, seconds_before = state["steps"], state["seconds"]
    resumed_at = done
    net.train()
    start = last_save = time.perf_counter()
    ran = 0

    def save():
        if checkpoint is not None:
            _save(checkpoint, {
                "identity": identity, "net": net.state_dict(), "optimizer": opt.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "order_rng": order_rng.bit_generator.state,
                "order": torch.from_numpy(order), "steps": done,
                "seconds": seconds_before + time.perf_counter() - start})

    with tqdm(total=total, initial=done, desc=desc, unit="batch", leave=False,
              file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 60.0) as bar:
        while done < total:
            step = done % per_epoch
            if step == 0:
                order = order_rng.permutation(len(x))
            batch = order[step * training.batch_size:(step + 1) * training.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(as_input(x[batch]).to(dev)), labels[batch])
            loss.backward()
            opt.step()
            done += 1
            ran += 1
            bar.update()
            if done % per_epoch == 0:
                bar.set_postfix(epoch=done // per_epoch, loss=f"{loss.item():.3f}")
            if done < total and (stop_after is not None and ran >= stop_after):
                save()
                break
            now = time.perf_counter()
            if done < total and (now - last_save >= checkpoint_seconds or (
                    checkpoint_steps and done % checkpoint_steps == 0)):
                save()
                last_save = now
        if ran:
            save()  # the final state: a longer run of the same recipe can start from it
    net.eval()
    net.to("cpu")
    return Run(seconds_before + time.perf_counter() - start, done, total, resumed_at)


def _load(path, identity: dict, dev: torch.device) -> dict | None:
    """The checkpoint at ``path`` if it belongs to the run described by ``identity``."""
    if path is None or not Path(path).exists():
        return None
    try:
        state = torch.load(path, map_location=dev, weights_only=False)
    except Exception as exc:  # a torn or foreign file: start afresh rather than fail
        tqdm.write(f"ignoring unreadable checkpoint {path}: {exc}", file=sys.stderr)
        return None
    if not isinstance(state, dict) or state.get("identity") != identity:
        tqdm.write(f"ignoring checkpoint {path}: it belongs to another run", file=sys.stderr)
        return None
    return state


def _save(path, state: dict) -> None:
    """Write a checkpoint through a temporary file, so that a crash leaves the last one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@torch.no_grad()
def predict(net: torch.nn.Module, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Predicted labels of uint8 images ``x``, with the network in eval mode (no dropout)."""
    net.eval()
    dev = next(net.parameters()).device
    out = [net(as_input(x[i:i + batch_size]).to(dev)).argmax(dim=1).cpu().numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def accuracy(net: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` whose predicted label equals ``y``."""
    return float(np.mean(predict(net, x) == np.asarray(y)))
