"""Backbones (registry), embedding models and their checkpoints, and the batched embedding engine.

See :mod:`comicid.models.embedding_model` for the contract other modules build on.
"""

from comicid.models.backbones import (
    DEFAULT_BACKBONE,
    Backbone,
    create_backbone,
    list_backbones,
    register_backbone,
)
from comicid.models.embed import CropSource, FeatureCache, crop_key, embed_crops, fuse_parts
from comicid.models.embedding_model import EmbeddingModel, load_embedding_model, save_embedding_model
from comicid.models import bot, facebody  # noqa: F401  (register their checkpoint kinds, as timm's models/__init__ does)

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "CropSource",
    "EmbeddingModel",
    "FeatureCache",
    "create_backbone",
    "crop_key",
    "embed_crops",
    "fuse_parts",
    "list_backbones",
    "load_embedding_model",
    "register_backbone",
    "save_embedding_model",
]
