"""Nearest-identity search over instance embeddings: exact (numpy) by default, faiss when installed."""

from comicid.search.index import ExactIndex, FaissIndex, create_index

__all__ = ["ExactIndex", "FaissIndex", "create_index"]
