"""Content hashes: the identity of a model file, whatever its name or path."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def sha256_model(path: str | os.PathLike, weight_files=()) -> str:
    """The content hash of a model: its file and, in the order given, its weight files.

    Weights kept as external data are part of what a model computes, so two models whose
    graphs are byte-identical but whose weight files differ must not share cached
    numbers. Without weight files this is exactly :func:`sha256_file`.
    """
    if not weight_files:
        return sha256_file(path)
    # fixed-length hex digests, concatenated: no two file lists give the same input
    digest = hashlib.sha256(sha256_file(path).encode())
    for weights in weight_files:
        digest.update(sha256_file(weights).encode())
    return digest.hexdigest()
