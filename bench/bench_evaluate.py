"""Evaluation of 1,093 images x 5 references (RSICD's test size) against calling pycocoevalcap
directly on the same data in the same run, and the bootstrap of every metric (1,000 resamples).

Data: the synthetic world's captions (five references per image; the hypothesis is a sixth
caption written from the same scene). Toolkit side: PTBTokenizer on references and hypotheses,
then Bleu, Meteor, Rouge and Cider ``compute_score``, as COCOEvalCap does. Our side: the whole
``evaluate`` job (tokenize, score, per-image and per-scene tables, store, statistics file, and the
1,000-resample intervals). Needs Java (PTB tokenizer and METEOR on the toolkit side).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import Row, timer

IMAGES = 1_093


def _world(root: Path, n: int) -> tuple[Path, Path]:
    from engine.datasets.synthetic import SCENES, caption_sentences, render_scene

    images, results = [], []
    for i in range(n):
        scene = SCENES[i % len(SCENES)]
        _, _, facts = render_scene(i, 48, scene)
        refs = caption_sentences(facts, i)
        hyp = caption_sentences(facts, i + 10_000)[0]
        name = f"{scene}_{i}.jpg"
        images.append({"filename": name, "imgid": i, "split": "test", "sentences": [{"raw": r} for r in refs]})
        results.append({"image_id": name, "caption": hyp})
    (root / "dataset.json").write_text(json.dumps({"dataset": "bench", "images": images}))
    (root / "results.json").write_text(json.dumps(results))
    return root / "dataset.json", root / "results.json"


def run(quick: bool = False) -> list[Row]:
    if shutil.which("java") is None:
        return [Row("evaluate vs pycocoevalcap", "skipped", "needs Java", None, "<= 1.3x", None)]
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    from engine.evaluation.metrics import MeteorSession, bootstrap, score_captions
    from engine.jobs.foreground import run_foreground
    from engine.workspace import Workspace

    n = 200 if quick else IMAGES
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset, results = _world(root, n)
        ws = Workspace(root / "ws")
        ws.init()
        run_foreground(ws, "ingest-captions", {"path": str(dataset), "allow_missing": True, "name": "bench"})
        run_foreground(ws, "import-generations", {"results": str(results), "dataset": "bench", "name": "hyp"})
        ann = json.loads(dataset.read_text())["images"]
        hyps = {r["image_id"]: r["caption"] for r in json.loads(results.read_text())}
        gts_raw = {i: [{"caption": s["raw"]} for s in e["sentences"]] for i, e in enumerate(ann)}
        res_raw = {i: [{"caption": hyps[e["filename"]]}] for i, e in enumerate(ann)}

        with timer() as t:
            gts = PTBTokenizer().tokenize(gts_raw)
            res = PTBTokenizer().tokenize(res_raw)
            Bleu(4).compute_score(gts, res, verbose=0)
            Meteor().compute_score(gts, res)
            Rouge().compute_score(gts, res)
            Cider().compute_score(gts, res)
        toolkit = t()
        with timer() as t:
            run_foreground(ws, "evaluate", {"generation": "hyp", "tokenizer": "java", "resamples": 1000})
        ours = t()

        refs = {i: [s["raw"] for s in e["sentences"]] for i, e in enumerate(ann)}
        session = MeteorSession()
        scores = score_captions(refs, {i: hyps[e["filename"]] for i, e in enumerate(ann)}, meteor=session)
        start = time.perf_counter()
        bootstrap(scores, resamples=1000, meteor=session)
        boot = time.perf_counter() - start
        session.close()
    ratio = ours / toolkit
    return [
        Row(f"evaluate {n} images x 5 refs (job, with 1,000-resample CIs)", f"{ours:.1f} s", f"{toolkit:.1f} s pycocoevalcap direct",
            ratio, "<= 1.3x", ratio <= 1.3),
        Row(f"bootstrap all 7 metrics, 1,000 resamples, {n} images", f"{boot:.2f} s", "-", None, "<= 2 s", boot <= 2.0),
    ]
