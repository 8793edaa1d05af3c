"""The evidence base for choosing zooindex's scorers: a diverse zoo, several targets, both
transfer protocols, and the statistics that decide (``python benchmarks/bench_evidence.py``).

Modules, in the order the builder runs them:

    sources   the four data sets as 28x28 grey uint8 (MNIST, Fashion-MNIST, CIFAR-10 grey,
              scikit-learn's digits) and the eight targets drawn from them
    nets      small ResNet, MobileNet, ViT and MLP networks at the zoo's input
    train     trains those briefly (an early and a final checkpoint of each run), adds
              random-weight controls, exports ONNX; copies the paper's zoo beside them
    measure   one unit per (model, target): features through zooindex's own runner, every
              estimator and variant, the label-free and few-label scores, and the ground
              truth of both protocols with per-image correctness; cached on disk
    finetune  a third ground truth for a subset: paper models rebuilt from their training
              checkpoints and fine-tuned whole on four targets; cached per unit
    stats     weighted Kendall tau, bootstrap intervals, paired differences, and
              leave-one-target-out selection (pure numpy, tested)
    report    writes benchmarks/ESTIMATORS.md
"""
