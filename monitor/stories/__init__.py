"""The story engine: near-duplicates and online story clustering (a pure stage; docs/stories.md).

The pipeline builds ``ArticleFeatures`` in the worker (``features_from_article``) and
calls ``StoryAssigner.assign(features, now)`` in order of arrival; the assigner's
state lives behind the ``StoryIndex`` and ``TermStatistics`` Protocols.
"""

from monitor.stories.clustering import (
    Assignment,
    InMemoryStoryIndex,
    InMemoryTermStatistics,
    StoredArticle,
    Story,
    StoryAssigner,
    StoryConfig,
    StoryIndex,
    TermStatistics,
)
from monitor.stories.features import ArticleFeatures, extract_features, features_from_article, outlet_of
from monitor.stories.fingerprint import Fingerprint, fingerprint, near_duplicate

__all__ = [
    "ArticleFeatures",
    "Assignment",
    "Fingerprint",
    "InMemoryStoryIndex",
    "InMemoryTermStatistics",
    "StoredArticle",
    "Story",
    "StoryAssigner",
    "StoryConfig",
    "StoryIndex",
    "TermStatistics",
    "extract_features",
    "features_from_article",
    "fingerprint",
    "near_duplicate",
    "outlet_of",
]
