"""Knowledge-VQA datasets: one record type, loaders for standard formats."""

from ravlm_graph.datasets.loaders import (FVQA_DBPEDIA_RELATIONS, UnknownRelationWarning, fvqa_relation, load_aokvqa,
                                          load_csqa, load_fvqa, load_fvqa_kb_facts, load_lxmert, load_vqa,
                                          unknown_relations)
from ravlm_graph.datasets.builtin import BUILTIN_SPLITS, BuildConfig, BuiltinRecord, build_builtin, load_builtin, read_manifest
from ravlm_graph.datasets.emoji_concepts import candidate_concepts, link_emoji
from ravlm_graph.types import CONCEPTNET_RELATIONS, Entity, Fact, VQARecord, canonical_relation, normalize_concept

__all__ = ["CONCEPTNET_RELATIONS", "Entity", "Fact", "VQARecord", "canonical_relation",
           "normalize_concept", "FVQA_DBPEDIA_RELATIONS", "fvqa_relation", "load_aokvqa", "load_csqa",
           "load_fvqa", "load_fvqa_kb_facts", "load_lxmert", "load_vqa", "UnknownRelationWarning", "unknown_relations",
           "BUILTIN_SPLITS", "BuildConfig", "BuiltinRecord", "build_builtin", "load_builtin", "read_manifest",
           "link_emoji", "candidate_concepts"]
