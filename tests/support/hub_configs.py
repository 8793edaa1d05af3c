"""Config files as published beside real hub models, for the preprocessing readers' tests."""

RESCALE = 0.00392156862745098  # 1/255 as transformers writes it
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# google/vit-base-patch16-224
VIT = {"do_normalize": True, "do_rescale": True, "do_resize": True,
       "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "ViTImageProcessor",
       "image_std": [0.5, 0.5, 0.5], "resample": 2, "rescale_factor": RESCALE,
       "size": {"height": 224, "width": 224}}
# openai/clip-vit-base-patch32
CLIP = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": CLIP_MEAN, "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD, "resample": 3, "rescale_factor": RESCALE,
        "size": {"shortest_edge": 224}}
# the same, as the older feature extractors wrote it: plain numbers
CLIP_OLD = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD, "resample": 3, "size": 224}
# facebook/convnext-tiny-224
CONVNEXT = {"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": IMAGENET_MEAN, "image_processor_type": "ConvNextImageProcessor",
            "image_std": IMAGENET_STD, "resample": 3, "rescale_factor": RESCALE,
            "size": {"shortest_edge": 224}}
# microsoft/beit-base-patch16-224 style: squash to 256x256, centre crop 224
SQUASH = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True,
          "do_normalize": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
          "image_std": [0.5, 0.5, 0.5], "resample": 3, "size": {"height": 256, "width": 256}}
# timm/resnet50.a1_in1k config.json
TIMM = {"architecture": "resnet50", "num_classes": 1000, "num_features": 2048,
        "pretrained_cfg": {"tag": "a1_in1k", "custom_load": False, "input_size": [3, 224, 224],
                           "test_input_size": [3, 288, 288], "fixed_input_size": False,
                           "interpolation": "bicubic", "crop_pct": 0.95, "test_crop_pct": 1.0,
                           "crop_mode": "center", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
                           "num_classes": 1000, "pool_size": [7, 7], "first_conv": "conv1",
                           "classifier": "fc"}}
