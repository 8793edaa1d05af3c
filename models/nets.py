"""The convolutional networks of the neuralRank paper (Figure 1), with adjustable widths.

The paper's network (layer numbers as in the paper, L0 is the input):

    L0 input (N, 1, 28, 28) in [0, 1]
    L1 5x5 conv, 32 filters, "same" padding, ReLU
    L2 2x2 max-pool
    L3 5x5 conv, 64 filters, "same" padding, ReLU
    L4 2x2 max-pool
    L5 dense 1024, ReLU          <- the layer neuralRank scores
       dropout 0.4
       dense logits

The *lite* variant drops L3 and L4, so its dense layer is L3. The widths are parameters
so that the demo zoo can use narrower networks of the same recipe. Submodules carry
stable names (``conv1``, ``dense``, ``relu_dense`` ...) because the ONNX exporter builds
tensor names from them: the scored layer comes out as ``/net/relu_dense/Relu_output_0``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

IMAGE_SIZE = 28
DROPOUT = 0.4
SCORED_MODULE = "relu_dense"  # the module whose output is the paper's scored dense layer


@dataclass(frozen=True)
class Widths:
    """Widths of one network: filters of each conv layer, units of the dense layer.

    ``conv`` has two entries for the paper network and one for the lite one.
    """

    conv: tuple[int, ...] = (32, 64)
    dense: int = 1024


def build_net(widths: Widths, num_classes: int) -> nn.Sequential:
    """A fresh network of the paper's recipe with the given widths and output classes.

    Returns logits; the softmax is added at export time so that training can use the
    numerically stable ``cross_entropy`` on logits.
    """
    if not widths.conv:
        raise ValueError("widths.conv needs at least one convolution layer, e.g. (32, 64)")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, side = 1, IMAGE_SIZE
    for i, filters in enumerate(widths.conv, start=1):
        layers[f"conv{i}"] = nn.Conv2d(channels, filters, kernel_size=5, padding=2)
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.MaxPool2d(2)
        channels, side = filters, side // 2
    layers["flatten"] = nn.Flatten()
    layers["dense"] = nn.Linear(channels * side * side, widths.dense)
    layers[SCORED_MODULE] = nn.ReLU()
    layers["dropout"] = nn.Dropout(DROPOUT)
    layers["logits"] = nn.Linear(widths.dense, num_classes)
    return nn.Sequential(layers)


def features(net: nn.Sequential) -> nn.Sequential:
    """The part of ``net`` up to the scored dense layer (after its ReLU), sharing weights."""
    names = list(net._modules)
    return net[:names.index(SCORED_MODULE) + 1]


class Probabilities(nn.Module):
    """Wraps a logits network so that its output is class probabilities (softmax).

    Exported models answer with probabilities, which is what a consumer of a classifier
    expects; the wrapped network is shared, not copied.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def parameter_count(net: nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
