"""Caption metrics with the COCO caption toolkit (pycocoevalcap), plus the per-image statistics
that bootstrap intervals and per-scene tables need.

The toolkit's own scorers compute every number (BLEU through its ``BleuScorer``, so the per-image
n-gram counts it already builds are kept; METEOR through its Java wrapper; ROUGE-L; CIDEr-D with
document frequencies from the whole corpus), so corpus scores equal the toolkit's. Inputs are
tokenized once, references and hypotheses in one tokenizer call.

Shapes: ``N`` images in ``keys`` order; ``bleu_stats`` is (N, 10): test length, closest reference
length, guessed n-grams (4), correct n-grams (4).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import WorkbenchError
from engine.evaluation.tokenize import java_available, tokenize_all

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""The toolkit's metric names, in its order."""
ALL_METRICS = (*METRICS, "SPICE")
SPICE_UNAVAILABLE = (
    "SPICE needs Stanford CoreNLP models fetched on first use and a Java 8 runtime; "
    "neither is available offline here"
)
_TINY, _SMALL = 1e-15, 1e-9
"""BleuScorer's smoothing constants."""


class EvaluationError(WorkbenchError):
    "Evaluation inputs are inconsistent (missing references, unknown metric, ...)."


@dataclass
class Scores:
    """Corpus and per-image scores of one set of captions."""

    keys: list[Hashable]
    corpus: dict[str, float]
    per_image: dict[str, np.ndarray]
    bleu_stats: np.ndarray
    """(N, 10) BLEU counts per image."""
    meteor_stats: np.ndarray | None = None
    """(N, 23) METEOR alignment statistics per image (Meteor's own SCORE output)."""
    unavailable: dict[str, str] = field(default_factory=dict)
    tokenizer: str = ""


def meteor_sum_ready(stats: np.ndarray) -> np.ndarray:
    """Per-image METEOR statistics made summable the way Meteor aggregates them.

    Columns: 0 test length, 1 reference length, 2-3 function words, 4-19 stage matches, 20 chunks,
    21-22 matched words. When Meteor aggregates, a segment matched completely in one chunk adds no
    chunks (no fragmentation); summing the raw lines instead would penalise every perfect match.
    Checked: the sum scored by Meteor equals its corpus score (tests/engine/evaluation).
    """
    out = stats.copy()
    perfect = (out[:, 21] == out[:, 0]) & (out[:, 22] == out[:, 1]) & (out[:, 20] == 1)
    out[perfect, 20] = 0
    return out


class MeteorSession:
    """A running METEOR 1.5 (the toolkit's jar and wrapper) for statistics and aggregation.

    Corpus METEOR is not a mean of per-image scores: Meteor sums the per-image alignment
    statistics and scores the sum. Bootstrap resamples are therefore summed here and scored by
    Meteor itself (one EVAL line for all resamples), so intervals use Meteor's exact formula.
    """

    def __init__(self) -> None:
        from pycocoevalcap.meteor.meteor import Meteor

        self._meteor = Meteor()

    def statistics(self, hypothesis: str, references: Sequence[str]) -> str:
        return str(self._meteor._stat(hypothesis, list(references)))

    def aggregate(self, stats: Sequence[str]) -> tuple[list[float], float]:
        """Meteor's score of each statistics line, and of their sum."""
        proc = self._meteor.meteor_p
        with self._meteor.lock:
            proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            proc.stdin.flush()
            each = [float(proc.stdout.readline().strip()) for _ in stats]
            total = float(proc.stdout.readline().strip())
        return each, total

    def score_sums(self, sums: np.ndarray) -> np.ndarray:
        """METEOR of summed statistics rows (B, 23) -> (B,)."""
        lines = [" ".join(repr(float(v)) for v in row) for row in sums]  # full precision: stats can be fractional
        each, _ = self.aggregate(lines)
        return np.asarray(each)

    def close(self) -> None:
        del self._meteor


def check_metrics(names: Sequence[str]) -> list[str]:
    """:raises EvaluationError: naming an unknown metric and listing the valid ones"""
    unknown = [n for n in names if n not in ALL_METRICS]
    if unknown:
        raise EvaluationError(f"unknown metric {unknown[0]!r}; valid: {', '.join(ALL_METRICS)}")
    return list(names)


def score_captions(
    references: Mapping[Hashable, Sequence[str]],
    hypotheses: Mapping[Hashable, str],
    *,
    metrics: Sequence[str] = METRICS,
    use_java: bool | None = None,
    pretokenized: bool = False,
    meteor: MeteorSession | None = None,
) -> Scores:
    """Score one hypothesis per key against that key's references.

    :param use_java: PTB tokenizer and METEOR through Java (default: when Java is installed);
        without Java, the Python tokenizer is used and METEOR is reported unavailable
    :param pretokenized: inputs are already tokenized (space-separated, lower case)
    :param meteor: a running session to use (and keep) for METEOR; default: one started and closed here
    :raises EvaluationError: if keys differ, a key has no references, or a metric is unknown
    """
    check_metrics(metrics)
    keys = list(hypotheses)
    if not keys:
        raise EvaluationError("nothing to score: no generated captions")
    missing = [k for k in keys if not references.get(k)]
    if missing:
        raise EvaluationError(f"{len(missing)} images have no references (first: {missing[0]}); every scored image needs at least one")
    java = java_available() if use_java is None else use_java
    if pretokenized:
        gts = {k: list(references[k]) for k in keys}
        res = {k: [hypotheses[k]] for k in keys}
        tokenizer = "given"
    else:
        combined: dict[Hashable, Sequence[str]] = {("ref", k): references[k] for k in keys}
        combined.update({("hyp", k): [hypotheses[k]] for k in keys})
        tokenized, tokenizer = tokenize_all(combined, use_java=java)
        gts = {k: tokenized[("ref", k)] for k in keys}
        res = {k: tokenized[("hyp", k)] for k in keys}
    corpus: dict[str, float] = {}
    per_image: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    bleu_stats = np.zeros((len(keys), 10))
    if any(m.startswith("Bleu_") for m in metrics):
        bleu, per, bleu_stats = _bleu(gts, res, keys)
        for n in range(4):
            corpus[f"Bleu_{n + 1}"] = bleu[n]
            per_image[f"Bleu_{n + 1}"] = np.asarray(per[n])
    meteor_stats = None
    if "METEOR" in metrics:
        if java:
            # What the toolkit's Meteor.compute_score does, keeping the statistics it discards.
            session = meteor or MeteorSession()
            lines = [session.statistics(res[k][0], gts[k]) for k in keys]
            per_m, corpus["METEOR"] = session.aggregate(lines)
            per_image["METEOR"] = np.asarray(per_m, dtype=np.float64)
            meteor_stats = meteor_sum_ready(np.array([line.split() for line in lines], dtype=np.float64))
            if meteor is None:
                session.close()
        else:
            unavailable["METEOR"] = ("METEOR runs on Java, left out with the Java-free tokenizer (tokenizer=auto or java scores it)"
                                     if java_available() else "METEOR runs on Java, which is not installed")
    if "ROUGE_L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        value, per_r = Rouge().compute_score(gts, res)
        corpus["ROUGE_L"], per_image["ROUGE_L"] = float(value), np.asarray(per_r, dtype=np.float64)
    if "CIDEr" in metrics:
        from pycocoevalcap.cider.cider import Cider

        value, per_c = Cider().compute_score(gts, res)
        corpus["CIDEr"], per_image["CIDEr"] = float(value), np.asarray(per_c, dtype=np.float64)
    if "SPICE" in metrics:
        unavailable["SPICE"] = SPICE_UNAVAILABLE
    return Scores(keys, corpus, per_image, bleu_stats, meteor_stats, unavailable, tokenizer)


def _bleu(gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]], keys: list[Hashable]) -> tuple[list[float], list[list[float]], np.ndarray]:
    """The toolkit's BLEU (option 'closest') and the per-image counts it is made of."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=4)
    for k in keys:
        scorer += (res[k][0], gts[k])
    corpus, per = scorer.compute_score(option="closest", verbose=0)
    stats = np.zeros((len(keys), 10))
    for i, comps in enumerate(scorer.ctest):
        testlen = comps["testlen"]
        stats[i, 0] = testlen
        stats[i, 1] = scorer._single_reflen(comps["reflen"], "closest", testlen)
        stats[i, 2:6] = comps["guess"]
        stats[i, 6:10] = comps["correct"]
    return [float(v) for v in corpus], per, stats


def bleu_from_stats(sums: np.ndarray) -> np.ndarray:
    """Corpus BLEU-1..4 from summed counts, as BleuScorer computes it.

    :param sums: (..., 10) summed ``bleu_stats``
    :returns: (..., 4)
    """
    testlen, reflen = sums[..., 0], sums[..., 1]
    guess, correct = sums[..., 2:6], sums[..., 6:10]
    ratios = (correct + _TINY) / (guess + _SMALL)
    out = np.cumprod(ratios, axis=-1) ** (1.0 / np.arange(1, 5))
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, _TINY)), 1.0)
    return out * brevity[..., None]


def corpus_from_weights(scores: Scores, weights: np.ndarray, meteor: MeteorSession | None = None, *,
                        with_meteor: bool = True) -> dict[str, np.ndarray]:
    """Corpus scores of weighted image sets (bootstrap resamples), one per row of ``weights``.

    BLEU and METEOR are scored from summed statistics (METEOR by Meteor itself, which needs a
    session); ROUGE-L and CIDEr-D corpus scores are means of per-image scores in the toolkit, so
    they are weighted means here. CIDEr keeps the full corpus's document frequencies.

    :param weights: (B, N) how often each image appears in each resample
    :param with_meteor: False leaves METEOR out rather than start Java (the TUI's quick reads)
    :returns: metric -> (B,)
    """
    out: dict[str, np.ndarray] = {}
    counts = weights.sum(1)
    if "Bleu_1" in scores.corpus:
        bleu = bleu_from_stats(weights @ scores.bleu_stats)
        for n in range(4):
            out[f"Bleu_{n + 1}"] = bleu[:, n]
    if with_meteor and "METEOR" in scores.corpus and scores.meteor_stats is not None and (meteor is not None or java_available()):
        session = meteor or MeteorSession()
        out["METEOR"] = session.score_sums(weights @ scores.meteor_stats)
        if meteor is None:
            session.close()
    for metric in ("ROUGE_L", "CIDEr"):
        if metric in scores.per_image:
            out[metric] = weights @ scores.per_image[metric] / counts
    return out


def image_of(key: Hashable) -> Hashable:
    """The image a scored key belongs to: leave-one-out keys are ``(image, i)``."""
    return key[0] if isinstance(key, tuple) else key


def _images(keys: Sequence[Hashable]) -> tuple[list[Hashable], np.ndarray]:
    """The distinct images of ``keys`` (first-seen order) and, per key, its image's index."""
    index: dict[Hashable, int] = {}
    of = np.array([index.setdefault(image_of(k), len(index)) for k in keys], dtype=np.int64)
    return list(index), of


def _resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) how often each of ``n`` units is drawn in each resample."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.repeat(np.arange(resamples), n), picks.ravel()), 1.0)
    return weights


def bootstrap(
    scores: Scores, *, resamples: int = 1000, seed: int = 0, level: float = 0.95, meteor: MeteorSession | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every corpus metric over resamples of the *images* (from cached
    statistics). Leave-one-out keys of one image are drawn together: they are not independent."""
    images, of = _images(scores.keys)
    weights = _resample_weights(len(images), resamples, seed)[:, of]
    tail = (1 - level) / 2 * 100
    return {
        m: (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
        for m, v in corpus_from_weights(scores, weights, meteor).items()
    }


def paired_bootstrap(
    a: Scores, b: Scores, *, resamples: int = 1000, seed: int = 0, level: float = 0.95, meteor: MeteorSession | None = None,
) -> dict[str, dict[str, float]]:
    """Difference b - a on the same images, with its interval from shared resamples of the images
    (either side may be leave-one-out references, several keys per image).

    :raises EvaluationError: if the two were scored on different images
    """
    images_a, of_a = _images(a.keys)
    images_b, of_b = _images(b.keys)
    if set(images_a) != set(images_b):
        differ = len(set(images_a) ^ set(images_b))
        raise EvaluationError(f"paired comparison needs the same images; {differ} of {len(set(images_a) | set(images_b))} differ "
                              "(evaluate one with subset=THE_OTHER to score it on the other's images)")
    position = {image: i for i, image in enumerate(images_a)}
    remap = np.array([position[image] for image in images_b], dtype=np.int64)
    drawn = _resample_weights(len(images_a), resamples, seed)
    wa, wb = corpus_from_weights(a, drawn[:, of_a], meteor), corpus_from_weights(b, drawn[:, remap[of_b]], meteor)
    tail = (1 - level) / 2 * 100
    out = {}
    for m in wa.keys() & wb.keys():
        diff = wb[m] - wa[m]
        out[m] = {
            "difference": b.corpus[m] - a.corpus[m],
            "low": float(np.percentile(diff, tail)),
            "high": float(np.percentile(diff, 100 - tail)),
            "p_not_better": float(np.mean(diff <= 0)),
        }
    return out


def group_scores(scores: Scores, groups: Sequence[Hashable], meteor: MeteorSession | None = None) -> dict[Hashable, dict[str, float]]:
    """Corpus scores within each group (e.g. scene), computed as the corpus scores are."""
    labels = list(groups)
    names = sorted(set(labels), key=str)
    weights = np.array([[g == label for g in labels] for label in names], dtype=np.float64)
    rows = corpus_from_weights(scores, weights, meteor)
    images = [image_of(k) for k in scores.keys]
    counts = {label: len({im for im, g in zip(images, labels, strict=True) if g == label}) for label in names}
    return {
        label: {m: float(v[i]) for m, v in rows.items()} | {"images": counts[label], "captions": int(weights[i].sum())}
        for i, label in enumerate(names)
    }


def leave_one_out(
    references: Mapping[Hashable, Sequence[str]], *, distinct: bool = False,
) -> tuple[dict[Hashable, list[str]], dict[Hashable, str]]:
    """Each reference as a hypothesis against the image's other references: the human level.

    Keys become ``(key, i)``; images with fewer than two references are skipped.

    :param distinct: leave out the other references that repeat the hypothesis (case and
        punctuation aside). RSICD repeats references to reach five per image, and a repeated
        reference scores perfectly against its twin, inflating the human level; references left
        with nothing to compare against are skipped.
    """
    from engine.datasets.text import duplicate_key

    refs: dict[Hashable, list[str]] = {}
    hyps: dict[Hashable, str] = {}
    for key, captions in references.items():
        if len(captions) < 2:
            continue
        keys = [duplicate_key(c) for c in captions]
        for i, caption in enumerate(captions):
            others = [c for j, c in enumerate(captions) if j != i and not (distinct and keys[j] == keys[i])]
            if others:
                refs[(key, i)] = others
                hyps[(key, i)] = caption
    return refs, hyps
