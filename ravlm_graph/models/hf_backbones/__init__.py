"""Hugging Face vision-language backbones that read graph tokens (LLaVA-style, VisionEncoderDecoder)."""

from ravlm_graph.models.hf_backbones.modeling import (BACKBONE_KINDS, BackboneConfig, LlavaKGBackbone,
                                                      VisionEncoderDecoderKGBackbone, load_backbone)

__all__ = ["BACKBONE_KINDS", "BackboneConfig", "LlavaKGBackbone", "VisionEncoderDecoderKGBackbone", "load_backbone"]
