"""Make the README's worked text example: three tiny text encoders and a labeled text target.

    python docs/text_example.py OUT_FOLDER

writes ``OUT_FOLDER/zoo/<model>/<model>.onnx`` (with its ``tokenizer.json``) for three tiny
BERT classifiers, and ``OUT_FOLDER/reviews.csv``, short reviews labelled by sentiment.
The models share one word-level tokenizer and differ in what they learnt on the same
kind of sentences: ``bert-sentiment`` their sentiment (the target's task),
``bert-topic`` their topic (films or food), ``bert-random`` nothing (random weights).
A search should rank ``bert-sentiment`` first. Needs torch, transformers and tokenizers
(``pip install 'zooindex[text,export]'``); training takes about two minutes of CPU time.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

POSITIVE = "good great nice fine fun lovely superb".split()
NEGATIVE = "bad awful poor boring dull terrible weak".split()
FILM = "movie film plot actor scene director".split()
FOOD = "dish meal taste chef sauce dessert".split()
FILLER = "the a was is very quite and but this that".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def sentences(n: int, seed: int):
    """``n`` sentences with their sentiment (0/1) and topic (0 film, 1 food)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        sentiment, topic = int(rng.integers(2)), int(rng.integers(2))
        words = list(rng.choice(POSITIVE if sentiment else NEGATIVE, 1))
        words += list(rng.choice(FOOD if topic else FILM, 2, replace=False))
        words += list(rng.choice(FILLER, int(rng.integers(2, 6)), replace=False))
        rng.shuffle(words)
        out.append((" ".join(words), sentiment, topic))
    return out


def tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = SPECIAL + POSITIVE + NEGATIVE + FILM + FOOD + FILLER
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tok, len(words)


def tiny_bert(vocab: int, task: int | None, tok, seed: int):
    """A tiny BERT classifier, trained for a few hundred steps on ``task`` (1 sentiment,
    2 topic of :func:`sentences`), or left random (``None``)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    if task is not None:
        data = sentences(512, seed=100 + task)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for step in range(300):
            batch = [data[i] for i in np.random.default_rng(step).choice(len(data), 32)]
            enc = tok.encode_batch([b[0] for b in batch])
            loss = model(input_ids=torch.tensor([e.ids for e in enc]),
                         attention_mask=torch.tensor([e.attention_mask for e in enc]),
                         labels=torch.tensor([b[task] for b in batch])).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        tok.no_padding()
    return model.eval()


def main(out: Path) -> None:
    from zooindex.text.export import from_transformers

    tok, vocab = tokenizer()
    for name, task, seed in (("bert-sentiment", 1, 1), ("bert-topic", 2, 2),
                             ("bert-random", None, 3)):
        folder = out / "zoo" / name
        folder.mkdir(parents=True, exist_ok=True)
        from_transformers(tiny_bert(vocab, task, tok, seed), folder / f"{name}.onnx")
        tok.save(str(folder / "tokenizer.json"))
        print(f"wrote {folder / (name + '.onnx')}")
    with open(out / "reviews.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for text, sentiment, _ in sentences(300, seed=7):
            writer.writerow([text, "positive" if sentiment else "negative"])
    print(f"wrote {out / 'reviews.csv'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
