"""Rewards for self-critical training: CIDEr-D (or BLEU-4, or their mean) of a caption against its
image's references, in-process.

Document frequencies come from the train references, computed once (:class:`CiderD`); each
image's references are tokenized and turned into tf-idf vectors and clipped n-gram counts once,
so a training step only tokenizes and vectorises its own captions. Scores equal the toolkit's
(pycocoevalcap's ``Cider`` given the same document frequencies, and ``Bleu``'s per-sentence
BLEU-4, option "closest") on the same tokenized input.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.evaluation.cider import SIGMA, CiderD, Ngram, ngram_counts
from engine.evaluation.tokenize import ptb_tokenize

REWARDS = ("cider", "bleu4", "cider+bleu4")
"""``cider``: CIDEr-D; ``bleu4``: sentence BLEU-4; ``cider+bleu4``: their mean."""
_TINY, _SMALL = 1e-15, 1e-9  # the toolkit's smoothing in BLEU


def grams(words: Sequence[str]) -> list[dict[Ngram, int]]:
    """Counts of a caption's 1..4-grams, one dict per length (the keys :class:`CiderD` uses)."""
    w1, w2, w3 = words[1:], words[2:], words[3:]
    out = []
    for each in (zip(words), zip(words, w1), zip(words, w1, w2), zip(words, w1, w2, w3)):
        counts: dict[Ngram, int] = {}
        for gram in each:
            counts[gram] = counts.get(gram, 0) + 1
        out.append(counts)
    return out


@dataclass(frozen=True)
class _Refs:
    """One image's references, indexed for scoring many captions against them."""

    index: tuple[dict[Ngram, tuple[tuple[int, float], ...]], ...]
    """Per n-gram length: each n-gram of any reference -> (reference, tf-idf weight) pairs."""
    norms: tuple[tuple[float, ...], ...]
    """Per reference, its tf-idf norm per n-gram length."""
    bigrams: tuple[int, ...]
    """Per reference, its bigram count (CIDEr-D's length term)."""
    clipped: Counter[Ngram]
    """Each n-gram's highest count in any one reference (BLEU's clipping)."""
    lengths: tuple[int, ...]
    """Per reference, its words (BLEU's reference length)."""
    texts: tuple[str, ...]
    """The tokenized references."""


def sentence_bleu4(hypothesis: str, refs: _Refs) -> float:
    """The toolkit's per-sentence BLEU-4 (reference length: the closest one, shorter on ties)."""
    words = hypothesis.split()
    testlen = len(words)
    if not refs.lengths:
        return 0.0
    reflen = min(refs.lengths, key=lambda n: (abs(n - testlen), n))
    counts = ngram_counts(hypothesis)
    score = 1.0
    for k in range(4):
        guess = max(testlen - k, 0)
        correct = sum(min(c, refs.clipped.get(g, 0)) for g, c in counts.items() if len(g) == k + 1)
        score *= (correct + _TINY) / (guess + _SMALL)
    bleu: float = score ** 0.25
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    return bleu * math.exp(1 - 1 / ratio) if ratio < 1 else bleu


class Reward:
    """Scores captions of an image against that image's references.

    :param references: ``{image: [reference, ...]}`` of every image that will be scored (raw
        text; tokenized here once)
    :param corpus: the images whose references give CIDEr-D's document frequencies (the train
        split's; default all of ``references``)
    """

    def __init__(self, references: Mapping[Hashable, Sequence[str]], corpus: Iterable[Hashable] | None = None,
                 metric: str = "cider") -> None:
        if metric not in REWARDS:
            raise ValueError(f"reward={metric!r}: choose from {', '.join(REWARDS)}")
        self.metric = metric
        tokenized = {key: [ptb_tokenize(t) for t in texts] for key, texts in references.items()}
        self.cider = CiderD(tokenized[k] for k in (references if corpus is None else corpus))
        log_n, df = self.cider.ref_len, self.cider.df
        self._idf = {gram: log_n - math.log(max(1.0, float(count))) for gram, count in df.items()}
        """Each corpus n-gram's weight per occurrence, ``log(N) - log(max(1, df))``; ``log(N)`` for any other."""
        self.refs = {key: self._index(texts) for key, texts in tokenized.items()}
        self._batch = _BatchCider(self) if metric != "bleu4" else None

    def _index(self, texts: Sequence[str]) -> _Refs:
        index: list[dict[Ngram, list[tuple[int, float]]]] = [{} for _ in range(4)]
        norms, bigrams, clipped = [], [], Counter[Ngram]()
        for j, text in enumerate(texts):
            counts = grams(text.split())
            own = []
            for n, c in enumerate(counts):
                total = 0.0
                for gram, tf in c.items():
                    w = tf * self._idf.get(gram, self.cider.ref_len)
                    index[n].setdefault(gram, []).append((j, w))
                    total += w * w
                    clipped[gram] = max(clipped[gram], tf)
                own.append(math.sqrt(total))
            norms.append(tuple(own))
            bigrams.append(sum(counts[1].values()))
        return _Refs(tuple({g: tuple(v) for g, v in d.items()} for d in index), tuple(norms), tuple(bigrams), clipped,
                     tuple(len(t.split()) for t in texts), tuple(texts))

    def score_tokenized(self, key: Hashable, tokenized: str) -> float:
        refs = self.refs[key]
        if self.metric == "bleu4":
            return sentence_bleu4(tokenized, refs)
        cider = self.cider.score(tokenized, refs.texts)  # one at a time: where the batch path cannot
        return cider if self.metric == "cider" else (cider + sentence_bleu4(tokenized, refs)) / 2

    def __call__(self, key: Hashable, captions: Sequence[str]) -> list[float]:
        """The reward of each caption (raw text) of image ``key``."""
        return self.batch([key] * len(captions), captions)

    def batch(self, keys: Sequence[Hashable], captions: Sequence[str]) -> list[float]:
        """The reward of each caption (raw text) against the references of its image: a whole
        training step at once, CIDEr-D computed with arrays (:class:`_BatchCider`)."""
        tokenized = [ptb_tokenize(c) for c in captions]
        cider = self._batch.scores(keys, tokenized) if self._batch is not None else None
        if cider is None:
            return [self.score_tokenized(k, t) for k, t in zip(keys, tokenized, strict=True)]
        if self.metric == "cider":
            return [float(v) for v in cider]
        return [(float(c) + sentence_bleu4(t, self.refs[k])) / 2 for c, k, t in zip(cider, keys, tokenized, strict=True)]


BITS = 14
"""Bits of a word id in an n-gram's integer code: 4 words in 56 bits, 7 left for the image."""
IMAGES = 1 << (63 - 4 * BITS)
"""Images per array pass (their index shares the 64-bit key with the n-gram code)."""


class _BatchCider:
    """CIDEr-D of many captions at once, each against its own image's references, with numpy:
    n-grams become integers (word ids in 14-bit fields), document frequencies and the references'
    weights sorted arrays keyed by (image, n-gram), so the per-n-gram work of
    :meth:`CiderD.score` is a few sorts and lookups over the whole batch. The same formula, so
    the same scores (to rounding, far below 1e-9). A vocabulary past 16,383 words falls back to
    :meth:`CiderD.score`, one caption at a time."""

    def __init__(self, reward: Reward) -> None:
        self.reward = reward
        self.vocab: dict[str, int] = {}
        self.refs = max((len(r.norms) for r in reward.refs.values()), default=1) or 1
        df = reward.cider.df
        codes: list[list[int]] = [[], [], [], []]
        idf: list[list[float]] = [[], [], [], []]
        for gram in df:
            codes[len(gram) - 1].append(self.code(gram))
            idf[len(gram) - 1].append(reward._idf[gram])
        self.df_codes, self.df_idf = [], []
        for n in range(4):
            array = np.array(codes[n], dtype=np.int64)
            order = np.argsort(array, kind="stable")
            self.df_codes.append(array[order])
            self.df_idf.append(np.array(idf[n], dtype=np.float64)[order])
        self.tables: dict[Hashable, tuple[list[tuple[Any, Any]], Any, Any]] = {}
        for key in reward.refs:  # once, before training, like the document frequencies
            self.table(key)

    def code(self, gram: Sequence[str]) -> int:
        value = 0
        for w in gram:
            value = (value << BITS) | self.vocab.setdefault(w, len(self.vocab) + 1)
        return value

    def table(self, key: Hashable) -> tuple[list[tuple[Any, Any]], Any, Any]:
        """An image's references: per n (n-gram codes, their weights per reference, padded to
        the most references any image has), the references' norms (refs, 4) and bigram counts."""
        found = self.tables.get(key)
        if found is None:
            refs = self.reward.refs[key]
            m = len(refs.norms)
            per_n = []
            for n in range(4):
                grams_n = list(refs.index[n])
                weights = np.zeros((len(grams_n), self.refs))
                for row, g in enumerate(grams_n):
                    for j, w in refs.index[n][g]:
                        weights[row, j] = w
                per_n.append((np.array([self.code(g) for g in grams_n], dtype=np.int64), weights))
            norms = np.zeros((self.refs, 4))
            norms[:m] = np.array(refs.norms, dtype=np.float64).reshape(m, 4)
            bigrams = np.zeros(self.refs)
            bigrams[:m] = refs.bigrams
            found = self.tables[key] = (per_n, norms, bigrams)
        return found

    def scores(self, keys: Sequence[Hashable], tokenized: Sequence[str]) -> Any:
        """CIDEr-D of each tokenized caption against its key's references; None when the
        vocabulary has outgrown the codes."""
        words = [t.split() for t in tokenized]
        ids = [self.vocab.setdefault(w, len(self.vocab) + 1) for ws in words for w in ws]
        if len(self.vocab) >= 1 << BITS:
            return None
        unique = list(dict.fromkeys(keys))
        if len(unique) > IMAGES:  # in passes of IMAGES images
            out = np.zeros(len(keys))
            for start in range(0, len(unique), IMAGES):
                part = set(unique[start : start + IMAGES])
                rows = [i for i, k in enumerate(keys) if k in part]
                out[rows] = self.scores([keys[i] for i in rows], [tokenized[i] for i in rows])
            return out
        return self._scores(keys, words, ids, unique)

    def _scores(self, keys: Sequence[Hashable], words: list[list[str]], ids: list[int], unique: list[Hashable]) -> Any:
        c, m = len(words), self.refs
        if c == 0:
            return np.zeros(0)
        where = {k: i for i, k in enumerate(unique)}
        image_of = np.array([where[k] for k in keys], dtype=np.int64)
        tables = [self.table(k) for k in unique]
        ref_norms = np.stack([t[1] for t in tables])[image_of]  # (c, m, 4)
        ref_bigrams = np.stack([t[2] for t in tables])[image_of]  # (c, m)
        counts = np.array([len(self.reward.refs[k].norms) for k in unique], dtype=np.float64)[image_of]
        lengths = np.array([len(ws) for ws in words])
        flat = np.array(ids, dtype=np.int64)
        owner = np.repeat(np.arange(c), lengths)
        shift = 4 * BITS
        total = np.zeros((c, m))
        for n in range(4):
            size = len(flat) - n
            if size <= 0:
                continue
            code = flat[:size].copy()
            for t in range(1, n + 1):
                code = (code << BITS) | flat[t : t + size]
            keep = owner[:size] == owner[n : n + size]  # the n-gram lies within one caption
            code, cap = code[keep], owner[:size][keep]
            if len(code) == 0:
                continue
            order = np.lexsort((code, cap))
            code, cap = code[order], cap[order]
            starts = np.flatnonzero(np.concatenate(([True], (code[1:] != code[:-1]) | (cap[1:] != cap[:-1]))))
            tf = np.diff(np.append(starts, len(code))).astype(np.float64)
            code, cap = code[starts], cap[starts]
            w = tf * self._lookup(self.df_codes[n], code, self.df_idf[n], self.reward.cider.ref_len)
            norm = np.sqrt(np.bincount(cap, w * w, minlength=c))
            ref_codes = np.concatenate([t[0][n][0] for t in tables])
            ref_weights = np.concatenate([t[0][n][1] for t in tables])
            owners = np.repeat(np.arange(len(tables), dtype=np.int64), [len(t[0][n][0]) for t in tables])
            ref_keys = (owners << shift) | ref_codes
            order = np.argsort(ref_keys, kind="stable")
            ref_keys, ref_weights = ref_keys[order], ref_weights[order]
            query = (image_of[cap] << shift) | code
            at = np.searchsorted(ref_keys, query)
            at_c = np.minimum(at, max(len(ref_keys) - 1, 0))
            hit = (at < len(ref_keys)) & (ref_keys[at_c] == query) if len(ref_keys) else np.zeros(len(query), bool)
            r = ref_weights[at_c[hit]]
            cells = (cap[hit, None] * m + np.arange(m)).ravel()  # (caption, reference) of each product
            overlap = np.bincount(cells, (np.minimum(w[hit, None], r) * r).ravel(), minlength=c * m).reshape(c, m).astype(np.float64)
            scale = norm[:, None] * ref_norms[:, :, n]
            total += np.divide(overlap, scale, out=overlap.copy(), where=scale != 0)
        delta = np.maximum(lengths - 1, 0)[:, None] - ref_bigrams
        damp = np.exp(-(delta * delta) / (2 * SIGMA * SIGMA))
        valid = np.arange(m)[None, :] < counts[:, None]
        summed = (total * damp * valid).sum(1)
        return np.where(counts > 0, 10.0 * summed / 4 / np.maximum(counts, 1), 0.0)

    @staticmethod
    def _lookup(sorted_codes: Any, codes: Any, values: Any, default: float) -> Any:
        """``values`` at each code's place in ``sorted_codes``, ``default`` where it is absent."""
        if len(sorted_codes) == 0:
            return np.full(len(codes), default)
        at = np.searchsorted(sorted_codes, codes)
        at_c = np.minimum(at, len(sorted_codes) - 1)
        return np.where((at < len(sorted_codes)) & (sorted_codes[at_c] == codes), values[at_c], default)
