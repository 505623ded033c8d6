"""kg_ingest: ConceptNet (official dump, CN-100K, any RDF) into a compact graph store.

>>> from kg_ingest import KnowledgeGraph, load_default
>>> kg = load_default()                         # bundled CN-100K
>>> kg.neighbors("apple", relation="UsedFor")   # [(relation, concept, weight), ...]
"""

from ._io import InputError
from .builder import GraphBuilder
from .conceptnet import ConceptNetOptions, iter_assertions
from .ingest import (bundled_path, cn100k_files, ingest_conceptnet, ingest_rdf, ingest_triples,
                     iter_records, load_default)
from .rdf import iri_to_concept, iri_to_relation, iter_rdf
from .records import Assertion, IngestStats
from .relations import RelationConfig, canonical_relation
from .store import Edge, KnowledgeGraph, Neighbor, Resolution, StoreError, SubgraphView, normalize_concept
from .triples import iter_triples

__version__ = "0.1.0"

__all__ = [
    "KnowledgeGraph", "SubgraphView", "Neighbor", "Edge", "Resolution", "StoreError", "InputError",
    "ConceptNetOptions", "RelationConfig", "GraphBuilder", "Assertion", "IngestStats",
    "ingest_conceptnet", "ingest_triples", "ingest_rdf", "load_default", "bundled_path", "cn100k_files",
    "iter_assertions", "iter_triples", "iter_rdf", "iter_records",
    "normalize_concept", "canonical_relation", "iri_to_concept", "iri_to_relation",
]
