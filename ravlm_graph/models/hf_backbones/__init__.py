"""Generative knowledge-VQA on Hugging Face backbones (LLaVA-style, VisionEncoderDecoder) reading graph tokens."""

from ravlm_graph.models.hf_backbones.configuration import (BACKBONE_KINDS, BACKBONES, BackboneConfig,
                                                           GenerativeVQAConfig, backbone_fingerprint, backbone_kind)
from ravlm_graph.models.hf_backbones.modeling import (ComposedEncoderDecoderKGBackbone, GenBatch, GenerativeOutput,
                                                      KnowledgeGenerator, LlavaKGBackbone,
                                                      VisionEncoderDecoderKGBackbone, load_backbone)
from ravlm_graph.models.hf_backbones.processing import (GenExample, GenerativeFeatureBuilder, answer_text,
                                                        collate_generative)

__all__ = ["BACKBONES", "BACKBONE_KINDS", "BackboneConfig", "ComposedEncoderDecoderKGBackbone", "GenBatch",
           "GenExample", "GenerativeFeatureBuilder", "GenerativeOutput", "GenerativeVQAConfig", "KnowledgeGenerator",
           "LlavaKGBackbone", "VisionEncoderDecoderKGBackbone", "answer_text", "backbone_fingerprint", "backbone_kind",
           "collate_generative", "load_backbone"]
