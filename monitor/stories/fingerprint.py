"""Text fingerprints: normalised text, word shingles, exact and near-duplicate tests.

An article's fingerprint is a hash of its normalised text (exact duplicates) and
a *consistent sample* of its word-5-shingle hashes: every shingle whose 64-bit
hash falls below a fixed fraction of the hash range is kept. Because the sample
is the same hash range for every text, ``|A∩B| / |A|`` over the samples is an
unbiased estimate of how much of A's text is contained in B, for any lengths.
That is what a trimmed copy needs (NBC's 7-sentence cut of a 40-sentence AP
story): MinHash estimates Jaccard, and Jaccard of a short text in a long one is
small and noisy, so containment derived from it was the wrong tool
(``docs/stories.md`` has the measurements that chose this over ``datasketch``).

Normalisation is deliberately general (nothing per outlet): Unicode quotes and
dashes folded, case folded, only word tokens kept, and wire datelines such as
``KYIV, Ukraine (AP) —`` dropped so a republished copy hashes like its original.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SHINGLE_WORDS = 5
# 1 shingle in 4 is kept: a 600-word article keeps ~150 hashes (1.2 kB), enough
# for containment within ±0.05 on the dev pairs (docs/stories.md).
SAMPLE_SHIFT = 2  # keep hashes whose top SAMPLE_SHIFT bits are zero → 1 / 2**SAMPLE_SHIFT
# A copy and its original share this much of the shorter text's shingles. The dev
# near-duplicates measure 0.63-1.00 and the closest non-duplicate 0.51 (exact).
NEAR_DUP_CONTAINMENT = 0.58
# Below this many sampled shingles the estimate is too coarse to call a near-duplicate.
MIN_SAMPLED_SHINGLES = 8

_QUOTE_FOLD = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'", "`": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u00a0": " ",
})
_WORD = re.compile(r"[^\W_]+(?:['.,][^\W_]+)*", re.UNICODE)
# "KYIV, Ukraine (AP) — " / "LONDON (Reuters) - ": a wire credit at the start of a copy.
_DATELINE = re.compile(r"^\s*[A-Z][A-Za-z .,'-]{0,60}\((?:AP|Reuters|AFP|UPI|dpa|PA)\)\s*[-—–:]\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])")
_MASK64 = (1 << 64) - 1


def fold_text(text: str) -> str:
    """Unicode-normalise, fold typographic quotes and dashes, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTE_FOLD)
    return " ".join(text.split())


def strip_dateline(text: str) -> str:
    return _DATELINE.sub("", text, count=1)


def has_wire_credit(folded: str) -> bool:
    """A ``CITY (AP) —`` opening of a text already through ``fold_text``: a republished wire copy."""
    return bool(_DATELINE.match(folded))


def words(text: str) -> list[str]:
    """Lower-case word tokens of folded text (numbers such as 9,000 and 103.5 stay whole)."""
    return folded_words(fold_text(text))


def folded_words(folded: str) -> list[str]:
    """``words`` of a text already through ``fold_text`` (folding is the costly part: once an article)."""
    return [w.strip(".,'") for w in _WORD.findall(folded.lower())]


def split_folded_sentences(folded: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(folded) if s]


@lru_cache(maxsize=200_000)
def stable_hash(token: str) -> int:
    """A 64-bit hash that is the same in every process (Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads the bits of combined token hashes over the whole range."""
    z = values.copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def shingle_hashes(tokens: Sequence[str], size: int = SHINGLE_WORDS) -> np.ndarray:
    """All word-``size``-shingle hashes of ``tokens`` (uint64, unordered, with repeats)."""
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    token_hashes = np.fromiter((stable_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
    if len(tokens) < size:
        size = len(tokens)
    count = len(tokens) - size + 1
    combined = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(size):
            # Rotate-and-xor by position keeps word order: "a b" and "b a" differ.
            part = token_hashes[offset:offset + count]
            shift = np.uint64((offset * 13) % 64)
            rotated = (part << shift) | (part >> (np.uint64(64) - shift)) if offset else part
            combined ^= _mix64(rotated + np.uint64(offset))
    return _mix64(combined)


def sample_shingles(hashes: np.ndarray, shift: int = SAMPLE_SHIFT) -> np.ndarray:
    """The consistent sample: hashes in the lowest 1/2**shift of the range, sorted, unique."""
    kept = hashes[(hashes >> np.uint64(64 - shift)) == 0] if shift else hashes
    return np.unique(kept)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What near-duplicate tests need of an article; small and storable (``sample.tobytes()``)."""

    exact: str  # blake2b of the normalised body: equal ⇔ exact duplicate
    sample: np.ndarray  # sorted unique uint64 shingle hashes (the consistent sample)
    words: int  # tokens in the normalised body
    wire_credit: bool = False  # opens with a "CITY (AP) —" credit: a republished copy

    @property
    def size(self) -> int:
        return int(self.sample.size)


def fingerprint(text: str) -> Fingerprint:
    return folded_fingerprint(fold_text(text))


def folded_fingerprint(folded: str) -> Fingerprint:
    """``fingerprint`` of a text already through ``fold_text``."""
    tokens = folded_words(strip_dateline(folded))
    exact = hashlib.blake2b(" ".join(tokens).encode("utf-8"), digest_size=16).hexdigest()
    sample = sample_shingles(shingle_hashes(tokens))
    return Fingerprint(exact=exact, sample=sample, words=len(tokens),
                       wire_credit=has_wire_credit(folded))


def containment(part: Fingerprint, whole: Fingerprint) -> float:
    """Estimated share of ``part``'s shingles that also occur in ``whole`` (0..1)."""
    if part.size == 0:
        return 0.0
    shared = np.intersect1d(part.sample, whole.sample, assume_unique=True).size
    return shared / part.size


@dataclass(frozen=True, slots=True)
class NearDuplicate:
    copy_is_first: bool  # True: the first argument is the copy of the second
    containment: float  # of the shorter text in the longer
    exact: bool


def near_duplicate(first: Fingerprint, second: Fingerprint,
                   threshold: float = NEAR_DUP_CONTAINMENT) -> NearDuplicate | None:
    """Whether the two texts are one underlying text, and which is the copy.

    The copy is the shorter (contained) text. When each contains the other (full
    copies), the one opening with a wire credit is the republication; failing
    that, the one with fewer words.
    """
    if first.exact == second.exact and first.words > 0:
        return NearDuplicate(copy_is_first=_copy_is_first(first, second, 1.0, 1.0), containment=1.0,
                             exact=True)
    shorter_first = first.size <= second.size
    part, whole = (first, second) if shorter_first else (second, first)
    if part.size < MIN_SAMPLED_SHINGLES:
        return None
    forward = containment(part, whole)
    if forward < threshold:
        return None
    backward = containment(whole, part)
    c_first, c_second = (forward, backward) if shorter_first else (backward, forward)
    return NearDuplicate(copy_is_first=_copy_is_first(first, second, c_first, c_second),
                         containment=forward, exact=False)


def _copy_is_first(first: Fingerprint, second: Fingerprint, c_first: float, c_second: float) -> bool:
    both_contained = min(c_first, c_second) >= NEAR_DUP_CONTAINMENT
    if both_contained and first.wire_credit != second.wire_credit:
        return first.wire_credit
    return (first.words, first.exact) < (second.words, second.exact)


def minhash_signature(hashes: Iterable[int] | np.ndarray, permutations: int = 128,
                      seed: int = 1) -> np.ndarray:
    """A classic MinHash signature (for the measured comparison in ``bench/stories_bench.py``)."""
    values = np.asarray(list(hashes) if not isinstance(hashes, np.ndarray) else hashes, dtype=np.uint64)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63 - 1, size=permutations, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63 - 1, size=permutations, dtype=np.uint64)
    if values.size == 0:
        return np.full(permutations, np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        permuted = values[None, :] * a[:, None] + b[:, None]
    return permuted.min(axis=1)
