"""Preprocessing read from the config files of real hub repos (contents as published)."""

from __future__ import annotations

import pytest

from support.hub_configs import (CLIP, CLIP_MEAN, CLIP_OLD, CLIP_STD, CONVNEXT, IMAGENET_MEAN,
                                 IMAGENET_STD, SQUASH, TIMM, VIT)
from zooindex.adapt import Preprocessing, describe_fit
from zooindex.errors import AdaptError
from zooindex.hubconfig import from_hf_preprocessor_config, from_timm_config


@pytest.mark.parametrize("config,expected", [
    (VIT, Preprocessing(scale=1.0, mean=[0.5] * 3, std=[0.5] * 3, interpolation="bilinear",
                        crop="none", input_size=224)),
    (CLIP, Preprocessing(scale=1.0, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic",
                         crop="center", resize_size=224, input_size=224)),
    (CLIP_OLD, Preprocessing(scale=1.0, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic",
                             crop="center", resize_size=224, input_size=224)),
    # ConvNeXT: shortest edge to int(224 / 0.875) = 256, centre crop 224
    (CONVNEXT, Preprocessing(scale=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             interpolation="bicubic", crop="center", resize_size=256,
                             input_size=224)),
    # ...and from 384 up it warps without a crop
    ({**CONVNEXT, "size": {"shortest_edge": 384}},
     Preprocessing(scale=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic",
                   crop="none", input_size=384)),
    (SQUASH, Preprocessing(scale=1.0, mean=[0.5] * 3, std=[0.5] * 3, interpolation="bicubic",
                           crop="squash", resize_size=256, input_size=224)),
    # EfficientNet's rescale_offset: x / 127.5 - 1, then the mean/std: scale 2, mean + 1
    ({"do_rescale": True, "rescale_factor": 1 / 127.5, "rescale_offset": True,
      "image_mean": [0.5, 0.25, 0.0], "image_std": [1.0, 1.0, 1.0]},
     Preprocessing(scale=2.0, mean=(1.5, 1.25, 1.0), std=[1.0] * 3)),
    # a model fed raw 0..255 numbers, not normalised
    ({"do_rescale": False, "do_normalize": False, "image_mean": [0.5]},
     Preprocessing(scale=255.0, mean=0.0, std=1.0)),
])
def test_hf_preprocessor_configs(config, expected):
    assert from_hf_preprocessor_config(config) == expected


def test_clip_config_adapts_like_the_clip_preset_at_the_models_size():
    prep = from_hf_preprocessor_config(CLIP)
    model = [None, 3, 224, 224]
    assert describe_fit((300, 400, 3), model, prep) == \
        describe_fit((300, 400, 3), model, Preprocessing(preset="clip"))
    # and it sizes a model whose dimensions are symbolic
    assert describe_fit((32, 32, 3), ["N", 3, "H", "W"], prep) == \
        "32x32 resized to 224x224 (bicubic)"


def test_timm_config():
    assert from_timm_config(TIMM) == Preprocessing(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic", crop="center",
        crop_pct=0.95, input_size=224)
    # the pretrained_cfg alone reads the same
    assert from_timm_config(TIMM["pretrained_cfg"]) == from_timm_config(TIMM)
    # what it leaves out takes timm's defaults (resolve_data_config)
    assert from_timm_config({"pretrained_cfg": {"input_size": [3, 299, 299]}}) == Preprocessing(
        mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic", crop="center",
        crop_pct=0.875, input_size=299)
    squash = from_timm_config({"pretrained_cfg": {"crop_mode": "squash", "crop_pct": 1.0}})
    assert (squash.crop, squash.crop_pct) == ("squash", 1.0)
    # a transformers config.json is not a timm config
    assert from_timm_config({"architectures": ["ViTForImageClassification"],
                             "hidden_size": 768}) is None


@pytest.mark.parametrize("reader,config,message", [
    (from_hf_preprocessor_config, {"image_mean": "grey", "image_std": [1]},
     "image_mean 'grey' is not a list of numbers"),
    (from_hf_preprocessor_config, {"resample": 9}, "resample 9 is not a Pillow filter code"),
    (from_hf_preprocessor_config, {"size": {"shortest_edge": -3}},
     "size.shortest_edge -3 is not a positive whole number"),
    (from_hf_preprocessor_config, {"do_rescale": "yes"}, "do_rescale 'yes' is not true or false"),
    (from_hf_preprocessor_config, [1, 2], "holds list, not an object"),
    (from_timm_config, {"pretrained_cfg": {"crop_mode": "zoom"}},
     "crop_mode 'zoom' is not center, squash or border"),
    (from_timm_config, {"pretrained_cfg": {"input_size": 224}}, "input_size 224 is not"),
])
def test_malformed_values_are_refused(reader, config, message):
    with pytest.raises(AdaptError, match=message):
        reader(config)


def test_user_settings_override_the_hub_in_a_merge():
    # the order the search's caller applies: hub config, then the model's own zooindex.*
    # metadata, then the user's flags
    hub = from_hf_preprocessor_config(CONVNEXT)
    stamped = Preprocessing.from_metadata({"zooindex.layout": "NCHW"})
    user = Preprocessing(crop_pct=0.95, interpolation="bilinear")
    prep = hub.merged(stamped).merged(user)
    assert (prep.layout, prep.crop, prep.crop_pct, prep.resize_size, prep.interpolation,
            prep.input_size, prep.mean) == ("NCHW", "center", 0.95, None, "bilinear",
                                            (224, 224), tuple(IMAGENET_MEAN))
