"""The names every layer chooses from, defined once: constants and nothing else.

This module sits below all of its users (options, target, adapt, resample, hubconfig,
the CLI) and imports nothing, so that each of them imports downward only and the CLI
can build its choices without importing numpy.
"""

METRICS = ("cosine", "euclidean", "sqeuclidean")
DEVICES = ("auto", "cpu", "cuda")
EXECUTORS = ("pipeline", "sequential", "ray")  # zooindex.executor registers each
PROTOCOLS = ("logits", "probe")  # zooindex.transfer registers each
SPLITS = ("train", "test")
INPUT_RANGES = ("0-1", "0-255")
# how targets are fitted to a model's input (zooindex.adapt, zooindex.resample)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
CROPS = ("none", "center", "squash")
PRESETS = ("imagenet", "clip", "inception", "none")
# the order of a 3-channel model's input channels (targets are read as RGB)
CHANNEL_ORDERS = ("rgb", "bgr")
DEFAULT_DIM = 10
DEFAULT_METRIC = "cosine"
DEFAULT_SCORER = "recommended"
DEFAULT_BATCH_SIZE = None  # chosen per model by memory (zooindex.runner.auto_batch_size)
DEFAULT_SEED = 0
# stratified half-samples of the target behind a ranking's confidence (zooindex.confidence)
DEFAULT_RESAMPLES = 100

# text models (zooindex.text): how a hidden state becomes one row per text, and which
# hidden states are scored
POOLINGS = ("mean", "first")
LAYER_AGGREGATIONS = ("last", "mean", "best")
