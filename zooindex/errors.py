"""The one exception hierarchy of zooindex.

Every error a user can cause is a :class:`ZooIndexError`. The CLI turns it into a
one-line message on stderr and a non-zero exit code; set ``ZOOINDEX_DEBUG=1`` to see
the traceback instead. Subclasses carry the offending thing as attributes so that
callers of the Python API can react to it without parsing messages.
"""

from __future__ import annotations


class ZooIndexError(Exception):
    """Base class of every error zooindex raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:  # one line, whatever the message contained
        return " ".join(super().__str__().split())


class DependencyError(ZooIndexError, ImportError):
    """An optional package is needed for this command but is not installed."""

    def __init__(self, message: str, package: str | None = None):
        super().__init__(message)
        self.package = package


def require(module: str, message: str, package: str | None = None):
    """``module`` imported, or a :class:`DependencyError` with ``message`` (what needs it
    and what to install) naming ``package`` (default: the module's top-level name)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyError(message, package=package or module.partition(".")[0]) from None


class ModelError(ZooIndexError, ValueError):
    """A model file is missing, unreadable, not ONNX, or cannot be run."""

    def __init__(self, message: str, path: str | None = None, model: str | None = None):
        super().__init__(message)
        self.path = path
        self.model = model


class LayerError(ZooIndexError, LookupError):
    """A layer was asked for that the model does not have, or none can be chosen."""

    def __init__(self, message: str, layer: str | None = None, model: str | None = None,
                 candidates: list[str] | None = None):
        super().__init__(message)
        self.layer = layer
        self.model = model
        self.candidates = candidates or []


class TargetError(ZooIndexError, ValueError):
    """A target data set is missing, malformed, or unusable for ranking."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class SplitError(TargetError):
    """A split was asked for that the data set does not have; ``available`` lists its splits."""

    def __init__(self, message: str, path: str | None = None, available=()):
        super().__init__(message, path=path)
        self.available = tuple(available)


class AdaptError(ZooIndexError, ValueError):
    """A target's inputs cannot be fitted to a model's input."""

    def __init__(self, message: str, model: str | None = None):
        super().__init__(message)
        self.model = model


class EstimatorError(ZooIndexError, ValueError):
    """An estimator is unknown, or its inputs are invalid for it."""

    def __init__(self, message: str, estimator: str | None = None):
        super().__init__(message)
        self.estimator = estimator


class StoreError(ZooIndexError):
    """The index database is locked, corrupt, read-only, or of an unknown version."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class NotIndexedError(StoreError, LookupError):
    """A model name was asked for that the index does not hold."""

    def __init__(self, message: str, model: str | None = None, path: str | None = None):
        super().__init__(message, path=path)
        self.model = model


class DownloadError(ZooIndexError):
    """A remote model or manifest could not be fetched or failed its checks."""

    def __init__(self, message: str, url: str | None = None):
        super().__init__(message)
        self.url = url
