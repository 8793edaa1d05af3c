"""Helpers shared by the tests: ONNX model builders, synthetic data, hostile inputs, local servers."""
