"""CIDEr-D in-process, with document frequencies computed once.

pycocoevalcap's ``Cider`` recomputes n-gram document frequencies from the references of every set
it scores. Choosing among candidates (the scene-consensus baseline, minimum-Bayes-risk decoding,
a training reward) scores many captions against fixed references, with the frequencies of a
fixed corpus (the train references): :class:`CiderD` holds those frequencies and the references'
tf-idf vectors, and scores a caption against any references with the toolkit's exact formula
(equal to it to 1e-12, tested on the RSICD val references):

- n-grams of 1..4 words; tf-idf ``tf * (log(N) - log(max(1, df)))``, ``N`` the corpus's image count;
- per n, the similarity of hypothesis and reference is ``sum(min(h, r) * r) / (|h| |r|)``, damped
  by ``exp(-delta^2 / (2 * 6^2))`` where ``delta`` is the difference of their *bigram* counts (the
  toolkit's "length", kept as it is so scores match);
- the score is ``10 * mean over n of (sum over references of similarity) / number of references``.

Inputs are tokenized text (space-separated, as the PTB tokenizer gives it).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

N = 4
SIGMA = 6.0

Ngram = tuple[str, ...]


def ngram_counts(text: str, n: int = N) -> Counter[Ngram]:
    """Counts of the 1..n-grams of a tokenized caption."""
    words = text.split()
    out: Counter[Ngram] = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            out[tuple(words[i : i + k])] += 1
    return out


@dataclass(frozen=True)
class Vector:
    """A caption as CIDEr sees it: tf-idf weights per n-gram length, their norms, its "length"."""

    weights: tuple[dict[Ngram, float], ...]
    norms: tuple[float, ...]
    length: int
    """Bigram count (the toolkit's length term)."""


class CiderD:
    """CIDEr-D with the document frequencies of a fixed corpus of reference sets.

    :param corpus: the reference sets (one per image) whose n-grams give the document frequencies
    """

    def __init__(self, corpus: Iterable[Sequence[str]]) -> None:
        df: Counter[Ngram] = Counter()
        images = 0
        for refs in corpus:
            images += 1
            df.update({g for ref in refs for g in ngram_counts(ref)})
        if images == 0:
            raise ValueError("CIDEr-D needs at least one reference set for its document frequencies")
        self.df = df
        self.ref_len = math.log(float(images))

    def vector(self, text: str) -> Vector:
        weights: list[dict[Ngram, float]] = [{} for _ in range(N)]
        norms = [0.0] * N
        length = 0
        for gram, tf in ngram_counts(text).items():
            n = len(gram) - 1
            w = float(tf) * (self.ref_len - math.log(max(1.0, float(self.df.get(gram, 0)))))
            weights[n][gram] = w
            norms[n] += w * w
            if n == 1:
                length += tf
        return Vector(tuple(weights), tuple(math.sqrt(v) for v in norms), length)

    @staticmethod
    def similarity(h: Vector, r: Vector) -> float:
        """The sum over n of the damped, clipped cosine of two captions (not yet averaged)."""
        delta = float(h.length - r.length)
        damp = math.exp(-(delta * delta) / (2 * SIGMA * SIGMA))
        total = 0.0
        for n in range(N):
            hw, rw = h.weights[n], r.weights[n]
            value = 0.0
            for gram, w in hw.items():
                rv = rw.get(gram)
                if rv is not None:
                    value += min(w, rv) * rv
            if h.norms[n] != 0 and r.norms[n] != 0:
                value /= h.norms[n] * r.norms[n]
            total += value * damp
        return total

    def score(self, hypothesis: str | Vector, references: Sequence[str | Vector]) -> float:
        """CIDEr-D of one caption against its references."""
        if not references:
            return 0.0
        h = hypothesis if isinstance(hypothesis, Vector) else self.vector(hypothesis)
        refs = [r if isinstance(r, Vector) else self.vector(r) for r in references]
        return 10.0 * sum(self.similarity(h, r) for r in refs) / N / len(refs)

    def consensus(self, candidates: Sequence[str]) -> tuple[int, np.ndarray]:
        """The candidate with the highest mean CIDEr-D against all the others (the first on ties),
        and every candidate's score: minimum-Bayes-risk selection under CIDEr-D.

        A few candidates (decoding) are compared pair by pair; many (a scene's train references)
        with sparse matrices, identical captions counted once with their multiplicity.
        """
        if len(candidates) <= 64:
            return self.consensus_of([self.vector(c) for c in candidates])
        return self._consensus_sparse(candidates)

    def _consensus_sparse(self, candidates: Sequence[str]) -> tuple[int, np.ndarray]:
        from scipy import sparse

        unique = list(dict.fromkeys(candidates))
        where = {c: i for i, c in enumerate(unique)}
        mult = np.bincount([where[c] for c in candidates], minlength=len(unique)).astype(np.float64)
        vectors = [self.vector(c) for c in unique]
        u = len(unique)
        lengths = np.array([v.length for v in vectors], np.float64)
        totals = np.zeros(u)  # each unique caption's summed similarity to every caption, copies counted
        for n in range(N):
            vocab: dict[Ngram, int] = {}
            rows, cols, vals = [], [], []
            for i, v in enumerate(vectors):
                for gram, w in v.weights[n].items():
                    rows.append(i)
                    cols.append(vocab.setdefault(gram, len(vocab)))
                    vals.append(w)
            if not vocab:
                continue
            matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(u, len(vocab)))
            by_column = matrix.tocsc()
            norms = np.array([v.norms[n] for v in vectors])
            for i in range(u):  # one row at a time: memory stays O(u) for tens of thousands of captions
                start, end = matrix.indptr[i], matrix.indptr[i + 1]
                if start == end or norms[i] == 0:
                    continue
                own_cols, own = matrix.indices[start:end], matrix.data[start:end]
                others = by_column[:, own_cols].toarray()  # (u, k_i): every caption's weights on this one's n-grams
                sims = (np.minimum(others, own) * others).sum(1)
                scale = norms * norms[i]
                sims = np.divide(sims, scale, out=np.zeros(u), where=scale != 0)
                sims *= np.exp(-((lengths - lengths[i]) ** 2) / (2 * SIGMA * SIGMA))
                totals[i] += sims @ mult - sims[i]  # less the candidate itself
        # mean over every *other* caption: all copies of each unique one, less the candidate itself
        scores_unique = 10.0 * totals / N / (len(candidates) - 1)
        scores = scores_unique[[where[c] for c in candidates]]
        return int(np.argmax(scores)), scores

    def consensus_of(self, vectors: Sequence[Vector]) -> tuple[int, np.ndarray]:
        k = len(vectors)
        if k == 1:
            return 0, np.array([0.0])
        sims = np.zeros((k, k))
        for i in range(k):
            for j in range(k):
                if i != j:
                    sims[i, j] = self.similarity(vectors[i], vectors[j])
        scores = 10.0 * sims.sum(1) / N / (k - 1)
        return int(np.argmax(scores)), scores
