"""Recipes of the neuralRank paper's model zoo: networks, training, ONNX export, zoo builder.

Needs PyTorch, which zooindex itself does not: only this folder and its tests import it.
Build a zoo with ``python -m models.build_zoo`` (see models/README.md).
"""
