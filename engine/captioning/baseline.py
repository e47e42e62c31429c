"""The retrieval baseline: caption an image with a reference of its nearest training images.

Images are compared by composition feature vectors (area share, centre, enclosing radius and
region count per class, standardised over the training set). Among the references of the ``k``
nearest training images, the one most similar to all the others is chosen (consensus re-ranking,
as in Devlin et al. 2015), so an odd reference of one neighbour is not picked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def _ngrams(text: str, n: int) -> Counter[tuple[str, ...]]:
    words = text.lower().split()
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _similarity(a: str, b: str) -> float:
    """Mean of unigram..4-gram F1 overlap between two captions (a cheap BLEU-like agreement)."""
    scores = []
    for n in range(1, 5):
        ca, cb = _ngrams(a, n), _ngrams(b, n)
        total_a, total_b = sum(ca.values()), sum(cb.values())
        if not total_a or not total_b:
            scores.append(0.0)
            continue
        overlap = sum((ca & cb).values())
        scores.append(2 * overlap / (total_a + total_b))
    return float(np.mean(scores))


def consensus(candidates: Sequence[str]) -> str:
    """The candidate with the highest mean similarity to the other candidates (first on ties)."""
    if len(candidates) == 1:
        return candidates[0]
    best, best_score = candidates[0], -1.0
    for i, c in enumerate(candidates):
        score = np.mean([_similarity(c, o) for j, o in enumerate(candidates) if j != i])
        if score > best_score:
            best, best_score = c, float(score)
    return best


def nearest(train: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices (Q, k) of the k nearest training vectors per query (standardised Euclidean)."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    t, q = (train - mean) / std, (queries - mean) / std
    d = (q * q).sum(1)[:, None] - 2 * q @ t.T + (t * t).sum(1)[None, :]
    k = min(k, len(train))
    idx = np.argpartition(d, k - 1, axis=1)[:, :k]
    rows = np.arange(len(q))[:, None]
    return idx[rows, np.argsort(d[rows, idx], axis=1, kind="stable")]
