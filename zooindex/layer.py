"""A candidate layer, and the one rule that picks the layers a command works on.

:class:`Layer` is what :mod:`zooindex.graph` finds in a graph, what the catalogue stores
and what searches, ``zooindex layers`` and the reports show. :func:`choose` turns a
``--layer`` value (``default``, a tensor name, or ``all``) into layers, with the one
error message every command gives. Nothing here imports onnx or numpy, so listing and
choosing layers stays cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ALL = "all"
DEFAULT = "default"
_LISTED_CANDIDATES = 12


@dataclass(frozen=True)
class Layer:
    """One tensor whose activations can serve as features.

    ``shape`` is per sample (batch dimension dropped), with ``None`` for unknown sizes
    and ``()`` when even the rank is unknown; ``width`` is the flattened feature count,
    ``None`` when any size is unknown. ``position`` orders layers by depth.
    """

    name: str
    op: str
    kind: str
    shape: tuple
    width: int | None
    position: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Layer":
        return cls(name=d["name"], op=d["op"], kind=d["kind"],
                   shape=tuple(d.get("shape") or ()), width=d.get("width", d.get("dim")),
                   position=int(d.get("position") or 0))


def listing(layers, limit: int = _LISTED_CANDIDATES) -> str:
    """``name (width)`` for each layer, the deepest ``limit`` when there are more."""
    layers = list(layers)
    if not layers:
        return "(none)"
    shown = layers[-limit:]
    text = ", ".join(f"{c.name} ({c.width if c.width is not None else '?'})" for c in shown)
    hidden = len(layers) - len(shown)
    return f"{text} (and {hidden} earlier layers)" if hidden else text


def choose(layers, default: str | None, layer: str | None, model: str = "model",
           reason: str | None = None) -> list[Layer]:
    """The layers ``--layer`` names: the default for ``None``/``"default"``, every
    candidate for ``"all"``, else the one with that tensor name.

    Raises :class:`~zooindex.errors.LayerError` naming the model, what is valid, and
    where to look; ``reason`` says why a model has no default layer, when it has none.
    """
    from .errors import LayerError

    layers = list(layers)
    names = [c.name for c in layers]
    if layer == ALL:
        return layers
    if layer is None or layer == DEFAULT:
        if default is None:
            why = f" ({reason})" if reason else ""
            raise LayerError(
                f"model '{model}' has no default layer{why}; pass --layer with one of: "
                f"{listing(layers)}. See `zooindex layers {model}`.",
                layer=layer, model=model, candidates=names)
        layer = default
    for candidate in layers:
        if candidate.name == layer:
            return [candidate]
    raise LayerError(f"layer '{layer}' not in model '{model}'; candidates: "
                     f"{listing(layers)}. See `zooindex layers {model}`.",
                     layer=layer, model=model, candidates=names)
