"""Tiny randomly initialised text encoders, saved as transformers writes a repository, and
their ONNX export as Hugging Face's exporter lays it out.

A tiny model is a transformers config (BERT, RoBERTa, DistilBERT), weights drawn from a
fixed seed, and a tokenizer trained here on the given texts with the ``tokenizers``
library (WordPiece for BERT and DistilBERT, byte-level BPE for RoBERTa), written with
``save_pretrained`` so that ``AutoModel`` / ``AutoTokenizer`` load the folder by path,
offline. :func:`export_onnx` writes ``model.onnx`` (inputs ``input_ids``,
``attention_mask`` and, for BERT, ``token_type_ids``; output ``last_hidden_state``, dynamic
batch and sequence axes) and copies ``tokenizer.json`` beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MAX_LENGTH = 64
SPECIALS = {
    "wordpiece": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
    "bpe": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
}
# name -> (transformers config class, tokenizer kind, config keywords)
TINY = {
    "tiny-bert": ("BertConfig", "wordpiece",
                  dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=MAX_LENGTH)),
    "tiny-roberta": ("RobertaConfig", "bpe",
                     dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=MAX_LENGTH + 2,
                          pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)),
    "tiny-distilbert": ("DistilBertConfig", "wordpiece",
                        dict(dim=48, n_layers=2, n_heads=4, hidden_dim=96,
                             max_position_embeddings=MAX_LENGTH)),
}


def train_tokenizer(kind: str, texts: list[str], vocab_size: int = 600):
    """A ``tokenizers.Tokenizer`` trained on ``texts``, with BERT's or RoBERTa's template."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers

    specials = SPECIALS[kind]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=specials))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                          trim_offsets=True)
    tok.enable_truncation(MAX_LENGTH)
    return tok


def make_tiny(name: str, folder, texts: list[str], seed: int = 0) -> Path:
    """Write tiny model ``name`` (of :data:`TINY`) to ``folder``; returns the folder."""
    import torch
    import transformers
    from transformers import AutoModel, PreTrainedTokenizerFast

    config_class, kind, keywords = TINY[name]
    folder = Path(folder)
    tok = train_tokenizer(kind, texts)
    config = getattr(transformers, config_class)(vocab_size=tok.get_vocab_size(), **keywords)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(folder)
    if kind == "wordpiece":
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
            sep_token="[SEP]", mask_token="[MASK]", model_max_length=MAX_LENGTH)
    else:
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
            pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
            model_max_length=MAX_LENGTH)
    fast.save_pretrained(folder)
    return folder


def export_onnx(folder, out_dir, *, all_layers: bool = False) -> Path:
    """``out_dir/model.onnx`` from the transformers folder, as Hugging Face's exporter names
    things, with ``tokenizer.json`` beside it. ``all_layers`` adds every hidden state as a
    graph output ``hidden_state_<i>`` (the reference path of the benchmark reads them)."""
    import torch
    from transformers import AutoModel

    folder, out_dir = Path(folder), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModel.from_pretrained(folder).eval()
    takes_types = model.config.model_type == "bert"
    layers = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") \
        else model.config.n_layers

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                             output_hidden_states=all_layers, **extra)
            if all_layers:
                return (out.last_hidden_state, *out.hidden_states)
            return out.last_hidden_state

    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_types else [])
    sample = tuple(torch.ones((2, 8), dtype=torch.long) for _ in names)
    outputs = ["last_hidden_state"] + ([f"hidden_state_{i}" for i in range(layers + 1)]
                                       if all_layers else [])
    dynamic = {n: {0: "batch_size", 1: "sequence_length"} for n in names + outputs}
    path = out_dir / "model.onnx"
    torch.onnx.export(Wrapped(model), sample, str(path), input_names=names,
                      output_names=outputs, dynamic_axes=dynamic, opset_version=17,
                      dynamo=False)
    shutil.copy(folder / "tokenizer.json", out_dir / "tokenizer.json")
    for extra in ("tokenizer_config.json", "config.json", "special_tokens_map.json"):
        if (folder / extra).is_file():
            shutil.copy(folder / extra, out_dir / extra)
    return path
