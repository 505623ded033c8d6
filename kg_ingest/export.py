"""Exports of a whole store or a selection of it: networkx, torch_geometric, rdflib."""

from __future__ import annotations

from urllib.parse import quote

import numpy as np

CN = "http://conceptnet.io/"


def _selection(kg, node_ids, edge_ids):
    if node_ids is None:
        return np.arange(kg.num_nodes, dtype=np.int64), np.arange(kg.num_edges, dtype=np.int64)
    return np.asarray(node_ids, dtype=np.int64), np.asarray(edge_ids, dtype=np.int64)


def to_networkx(kg, node_ids=None, edge_ids=None):
    """networkx.MultiDiGraph: nodes are concept names; edges carry ``relation``, ``weight``.

    Edge keys are the relation names, so one (head, tail) pair holds one edge per relation.
    """
    try:
        import networkx as nx
    except ImportError as e:  # pragma: no cover
        raise ImportError("to_networkx needs networkx: pip install 'ravlm-graph[networkx]'") from e
    nodes, edges = _selection(kg, node_ids, edge_ids)
    g = nx.MultiDiGraph()
    names = kg.concept_names(nodes.tolist())
    g.add_nodes_from(names)
    src = kg.edge_src[edges].tolist()
    dst = kg.edge_dst[edges].tolist()
    rel = kg.edge_rel[edges].tolist()
    w = kg.edge_weight[edges].tolist()
    name_of = dict(zip(nodes.tolist(), names))
    rels = kg.relations

    def nm(i):
        n = name_of.get(i)
        return n if n is not None else kg.concept_name(i)

    g.add_edges_from((nm(s), nm(d), rels[r], {"relation": rels[r], "weight": x})
                     for s, d, r, x in zip(src, dst, rel, w))
    return g


def to_pyg(kg, node_ids=None, edge_ids=None):
    """torch_geometric ``Data``.

    Fields: ``edge_index`` (2, E) long in local node numbering, ``edge_type`` (E,)
    long relation ids, ``edge_weight`` (E,) float, ``node_id`` (N,) long store ids,
    ``num_nodes``, plus ``node_names`` and ``relation_names`` lists.
    """
    try:
        import torch
        from torch_geometric.data import Data
    except ImportError as e:
        raise ImportError("to_pyg needs torch and torch_geometric: pip install 'ravlm-graph[pyg]'") from e
    nodes, edges = _selection(kg, node_ids, edge_ids)
    local = np.searchsorted(nodes, kg.edge_src[edges]), np.searchsorted(nodes, kg.edge_dst[edges])
    ei = torch.from_numpy(np.stack(local).astype(np.int64)) if len(edges) else torch.zeros(2, 0, dtype=torch.long)
    return Data(
        edge_index=ei,
        edge_type=torch.from_numpy(np.asarray(kg.edge_rel[edges], dtype=np.int64)),
        edge_weight=torch.from_numpy(np.asarray(kg.edge_weight[edges], dtype=np.float32)),
        node_id=torch.from_numpy(nodes.copy()),
        num_nodes=len(nodes),
        node_names=kg.concept_names(nodes.tolist()),
        relation_names=list(kg.relations),
    )


# Percent-encoded in IRIs: everything but RFC 3986's unreserved characters, so a name holding
# "/", "#", "%", a space or any non-ASCII character comes back unchanged from
# :func:`kg_ingest.rdf.iri_to_concept` / :func:`~kg_ingest.rdf.iri_to_relation`, which decode them.
_UNRESERVED = "_-.~"


def concept_iri(kg, name: str) -> str:
    """``http://conceptnet.io/c/en/<term>``, the term percent-encoded as one path segment
    (``a/b`` -> ``c/en/a%2Fb``); a store whose names carry their language (``fr/pomme``)
    keeps that first ``/``."""
    lang = kg.language
    if not lang:
        lang, _, name = name.partition("/")
    return f"{CN}c/{quote(lang, safe=_UNRESERVED)}/{quote(name, safe=_UNRESERVED)}"


def relation_iri(relation: str) -> str:
    """``http://conceptnet.io/r/<relation>``, percent-encoded (``/`` kept: ``r/dbpedia/genre``)."""
    return CN + "r/" + quote(relation, safe="/" + _UNRESERVED)


def to_rdflib(kg, node_ids=None, edge_ids=None):
    """rdflib.Graph of (concept, relation, concept) triples with ConceptNet IRIs.

    Weights are not RDF triples of ConceptNet's own vocabulary and are left out;
    isolated nodes have no triple.
    """
    try:
        import rdflib
    except ImportError as e:  # pragma: no cover
        raise ImportError("to_rdflib needs rdflib: pip install 'ravlm-graph[rdf]'") from e
    _, edges = _selection(kg, node_ids, edge_ids)
    g = rdflib.Graph()
    g.bind("c", rdflib.Namespace(CN + ("c/" + kg.language + "/" if kg.language else "c/")))
    g.bind("r", rdflib.Namespace(CN + "r/"))
    cache: dict[int, rdflib.URIRef] = {}

    def node(i):
        u = cache.get(i)
        if u is None:
            u = cache[i] = rdflib.URIRef(concept_iri(kg, kg.concept_name(i)))
        return u

    rel_refs = [rdflib.URIRef(relation_iri(r)) for r in kg.relations]
    for s, d, r in zip(kg.edge_src[edges].tolist(), kg.edge_dst[edges].tolist(), kg.edge_rel[edges].tolist()):
        g.add((node(s), rel_refs[r], node(d)))
    return g
