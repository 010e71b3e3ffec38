"""Offline sentence embeddings for the learned stage (optional: ``newsmon[embeddings]``).

The ``wordllama`` wheel ships both its token-embedding weights and its tokenizer,
so nothing is fetched: the files are loaded from the installed package with the
download disabled (wordllama 0.4 looks for its own tokenizer under a misspelt
folder and would otherwise go to the network; pointing its cache at the package
folder finds both files). An article is embedded once, from its headline and the
first :data:`MAX_WORDS` words of its body: the start says what a story is about,
and a fixed length keeps the cost flat (about 0.7 ms here).

A topic model trained with these features lists them as ``emb:0`` … ``emb:255``;
where the package is missing such a model is not used and the rules decide.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from monitor.analysis.analyser import AnalysedArticle

__all__ = ["EMBEDDING", "PREFIX", "Embedder", "available", "embedding_signals", "is_embedding"]

log = logging.getLogger(__name__)

PREFIX = "emb:"
DIM = 256
MAX_WORDS = 300
# What a model file records, and checks on load: another model or cut is another feature space.
EMBEDDING: Mapping[str, Any] = {"model": "wordllama l2_supercat", "dim": DIM, "words": MAX_WORDS}


def is_embedding(feature: str) -> bool:
    return feature.startswith(PREFIX)


def available() -> bool:
    """Whether the embeddings can be computed here (the package is installed)."""
    try:
        import wordllama  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_text(title: str, body: str) -> str:
    head = " ".join(body.split(None, MAX_WORDS)[:MAX_WORDS])  # the first words, not the whole body
    return f"{title.strip()}. {head}" if title.strip() else head


def embedding_signals(vector: np.ndarray) -> dict[str, float]:
    return {f"{PREFIX}{j}": float(v) for j, v in enumerate(vector)}


class Embedder:
    """Loads the weights on first use (0.2 s, about 40 MB), once per process."""

    _lock = threading.Lock()
    _model: Any = None

    @classmethod
    def _load(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                import wordllama
                from wordllama import WordLlama

                package = Path(wordllama.__file__).parent
                cls._model = WordLlama.load(cache_dir=package, dim=DIM, disable_download=True)
            return cls._model

    @classmethod
    def embed(cls, title: str, body: str) -> np.ndarray:
        """The article's unit-length vector (:data:`DIM` floats)."""
        vec = cls._load().embed([embedding_text(title, body)], norm=True)
        return np.asarray(vec[0], dtype=float)

    @classmethod
    def embed_analysed(cls, analysed: AnalysedArticle) -> dict[str, float]:
        """An analysed article's embedding as learned-stage signals (training and
        judging both embed the analysed text, so they see the same words)."""
        title, body = analysed.field("title"), analysed.field("body")
        return embedding_signals(cls.embed(title.text if title else "", body.text if body else ""))
