"""The SCST reward: CIDEr-D evaluations per second in-process (document frequencies and reference
vectors cached once, each caption tokenized and scored) against pycocoevalcap's ``Cider`` on the
same batch (given the captions already tokenized; it recomputes document frequencies from the
batch's references on every call, as a per-step toolkit call would).

Data: the synthetic world's captions, a batch of 16 images x 5 sampled captions (one SCST step of
the defaults) scored against each image's 5 references, repeated over 64 batches.
"""

from __future__ import annotations

import time

from bench.common import Row

BATCH, SAMPLES = 16, 5


def run(quick: bool = False) -> list[Row]:
    from pycocoevalcap.cider.cider import Cider

    from engine.captioning.reward import Reward
    from engine.datasets.synthetic import SCENES, caption_sentences, render_scene
    from engine.evaluation.tokenize import ptb_tokenize

    batches = 8 if quick else 64
    n = BATCH * batches
    refs: dict[int, list[str]] = {}
    samples: dict[int, list[str]] = {}
    for i in range(n):
        _, _, facts = render_scene(i, 32, SCENES[i % len(SCENES)])
        refs[i] = caption_sentences(facts, i)
        samples[i] = [caption_sentences(facts, i + 10_000 * (k + 1))[0] for k in range(SAMPLES)]
    reward = Reward(refs)  # once, before training: the document frequencies and reference vectors
    tok_refs = {i: [ptb_tokenize(r) for r in refs[i]] for i in range(n)}
    tok_samples = {i: [ptb_tokenize(s) for s in samples[i]] for i in range(n)}
    ours = toolkit = 0.0
    mine = []
    for b in range(batches):  # interleaved, batch by batch, so a change in the machine's load hits both
        images = range(b * BATCH, (b + 1) * BATCH)
        start = time.perf_counter()
        mine += reward.batch([i for i in images for _ in range(SAMPLES)], [c for i in images for c in samples[i]])
        middle = time.perf_counter()
        gts = {(i, k): tok_refs[i] for i in images for k in range(SAMPLES)}
        res = {(i, k): [tok_samples[i][k]] for i in images for k in range(SAMPLES)}
        Cider().compute_score(gts, res)
        ours, toolkit = ours + middle - start, toolkit + time.perf_counter() - middle
    evaluations = n * SAMPLES
    assert len(mine) == evaluations
    rate, base = evaluations / ours, evaluations / toolkit
    return [Row(f"SCST reward, CIDEr-D, {BATCH}x{SAMPLES} captions per step", f"{rate:,.0f} captions/s",
                f"pycocoevalcap Cider {base:,.0f} captions/s", rate / base, ">= 20x", rate / base >= 20)]
