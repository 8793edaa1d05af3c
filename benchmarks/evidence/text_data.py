"""Labeled English texts that Debian's packages ship, for the text ranking-quality table.

Two sources, both installed by ``apt-get install fortunes wordnet-base``:

- ``fortunes``: the fortune cookie files of /usr/share/games/fortunes, one file per topic
  (computers, food, law, ...); a text is one cookie, its label the file it comes from.
- ``wordnet-base``: WordNet 3.0's synsets, /usr/share/wordnet/data.{noun,verb}; a text is
  a synset's definition (its gloss up to the first example), its label the lexicographer
  file that WordNet files it under (noun.animal, verb.motion, ...).

Each target takes five classes, drops texts shorter than 3 words, longer than 600
characters, or repeated, and draws a test set and a training pool (``per_class`` texts per
class each) once, seeded and stratified.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORTUNES = Path("/usr/share/games/fortunes")
WORDNET = Path("/usr/share/wordnet")

# WordNet 3.0's lexicographer files, by number (wndb(5WN), "lexnames").
LEXNAMES = {
    3: "noun.Tops", 4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute",
    8: "noun.body", 9: "noun.cognition", 10: "noun.communication", 11: "noun.event",
    12: "noun.feeling", 13: "noun.food", 14: "noun.group", 15: "noun.location",
    16: "noun.motive", 17: "noun.object", 18: "noun.person", 19: "noun.phenomenon",
    20: "noun.plant", 21: "noun.possession", 22: "noun.process", 23: "noun.quantity",
    24: "noun.relation", 25: "noun.shape", 26: "noun.state", 27: "noun.substance",
    28: "noun.time", 29: "verb.body", 30: "verb.change", 31: "verb.cognition",
    32: "verb.communication", 33: "verb.competition", 34: "verb.consumption",
    35: "verb.contact", 36: "verb.creation", 37: "verb.emotion", 38: "verb.motion",
    39: "verb.perception", 40: "verb.possession", 41: "verb.social", 42: "verb.stative",
    43: "verb.weather",
}

# name -> (source, classes). The last one is held out: no choice reads it.
TARGETS = {
    "fortune-a": ("fortunes", ("computers", "food", "law", "drugs", "startrek")),
    "fortune-b": ("fortunes", ("politics", "science", "work", "art", "literature")),
    "wordnet-noun": ("wordnet", ("noun.animal", "noun.food", "noun.plant", "noun.body",
                                 "noun.artifact")),
    "wordnet-verb": ("wordnet", ("verb.motion", "verb.communication", "verb.consumption",
                                 "verb.emotion", "verb.competition")),
    "wordnet-noun-b": ("wordnet", ("noun.person", "noun.location", "noun.time",
                                   "noun.substance", "noun.feeling")),
}
HELD_OUT = ("wordnet-noun-b",)


@dataclass(frozen=True)
class TextTarget:
    name: str
    classes: tuple[str, ...]
    test_texts: list[str]
    test_labels: np.ndarray
    pool_texts: list[str]
    pool_labels: np.ndarray


def fortune_texts(topic: str) -> list[str]:
    """The cookies of one fortune file, whitespace collapsed."""
    raw = (FORTUNES / topic).read_bytes().decode("utf-8", errors="replace")
    cookies = []
    for block in raw.split("\n%\n"):
        text = " ".join(block.replace("%", " ").split())
        if text:
            cookies.append(text)
    return cookies


def wordnet_texts() -> dict[str, list[str]]:
    """Every noun and verb synset's definition, grouped by lexicographer file."""
    by_class: dict[str, list[str]] = {}
    for part in ("noun", "verb"):
        for line in (WORDNET / f"data.{part}").read_text(encoding="utf-8").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue  # the licence header
            head, gloss = line.split("|", 1)
            lexname = LEXNAMES.get(int(head.split()[1]))
            definition = gloss.split(';')[0].split('"')[0].strip()
            if lexname and definition:
                by_class.setdefault(lexname, []).append(definition)
    return by_class


def _usable(texts: list[str]) -> list[str]:
    seen, kept = set(), []
    for t in texts:
        if len(t.split()) >= 3 and len(t) <= 600 and t not in seen:
            seen.add(t)
            kept.append(t)
    return kept


def load_target(name: str, per_class: int = 100) -> TextTarget:
    """A test set and a training pool of ``per_class`` texts per class each, seeded by name."""
    source, classes = TARGETS[name]
    if source == "fortunes":
        pools = {c: _usable(fortune_texts(c)) for c in classes}
    else:
        everything = wordnet_texts()
        pools = {c: _usable(everything[c]) for c in classes}
    seed = int.from_bytes(hashlib.sha256(f"zooindex-text/{name}".encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed)
    test_t, test_y, pool_t, pool_y = [], [], [], []
    for k, c in enumerate(classes):
        texts = pools[c]
        take = min(per_class, len(texts) // 2)
        order = rng.permutation(len(texts))
        test_t += [texts[i] for i in order[:take]]
        pool_t += [texts[i] for i in order[take:2 * take]]
        test_y += [k] * take
        pool_y += [k] * take
    return TextTarget(name, classes, test_t, np.array(test_y), pool_t, np.array(pool_y))
