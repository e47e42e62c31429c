"""Caption quality beside honest baselines, with 95% intervals: ``python -m bench.quality ucm`` or
``python -m bench.quality synthetic [--images 960]``.

Unlike the speed benchmarks these print scores, not ratios: every number comes from the
workbench's own jobs (ingest, baseline-scene, train-captioner, generate, evaluate, runs compare)
run here in a fresh workspace, so the tables in the README can be remade with one command.

- ``ucm``: UCM-captions from ``../shared/data`` (captions and the 21 scene lists; no images are
  needed for scene prompts), test split: the constant caption, the scene consensus, a tiny
  captioner on scene prompts decoded greedy, with beam 8 and by minimum Bayes risk over 8 beams,
  the same captioner after self-critical training (SCST; greedy and MBR), and the human level
  (``distinct=true``), with paired differences against the scene consensus. Scenes are the dataset's labels (oracle), as in the
  published tables; a real system would read them from a classifier.
- ``synthetic``: a synthetic world of ``--images`` images, the demo's pipeline (segmenter, masks,
  compositions, scene classifier, predicted scenes) at that size, then the captioner (prompt
  both, predicted scenes, MBR over 8 beams) and its SCST fine-tuning against kNN and the scene
  consensus with paired bootstrap differences.

``--scst K=V`` (repeatable) sets a param of the SCST run (``epochs=6``, ``lr=1e-4``, ...).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COLUMNS = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def _job(ws: Any, kind: str, params: dict[str, Any]) -> Any:
    from engine.jobs.foreground import run_foreground

    start = time.perf_counter()
    result = run_foreground(ws, kind, params)
    print(f"  {kind:<22} {time.perf_counter() - start:6.1f} s  {result.message[:110]}", file=sys.stderr, flush=True)
    return result


def _row(ws: Any, label: str, evaluation: str) -> list[str]:
    from engine.store.runs import get_run

    m = get_run(ws.open_db(), evaluation).metrics  # type: ignore[union-attr]
    cells = [label, str(m["images"])]
    for c in COLUMNS:
        if c not in m:
            cells.append("n/a")
            continue
        low, high = m.get("ci95", {}).get(c, (None, None))
        cells.append(f"{m[c]:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None else ""))
    return cells


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)


def ucm(ws: Any, epochs: int, scst: dict[str, Any]) -> str:
    captions, scenes = SHARED / "ucm-captions" / "dataset.json", SHARED / "ucm-scenes"
    if not captions.exists() or not scenes.is_dir():
        raise SystemExit(f"needs {captions} and {scenes} (the shared samples)")
    _job(ws, "ingest-captions", {"path": str(captions), "name": "ucm", "scenes": str(scenes), "allow_missing": True})
    runs = [("constant caption (one for all)", "baseline-scene", {"dataset": "ucm", "scenes": "none"}, "constant.ucm.test"),
            ("scene consensus (oracle scenes)", "baseline-scene", {"dataset": "ucm"}, "scene.ucm.test")]
    _job(ws, "train-captioner", {"dataset": "ucm", "prompt": "scene", "name": "cap", "epochs": epochs})
    runs += [("captioner, scene prompt, greedy", "generate", {"captioner": "cap", "name": "greedy"}, "greedy"),
             ("captioner, beam 8", "generate", {"captioner": "cap", "num_beams": 8, "name": "beam8"}, "beam8"),
             ("captioner, MBR over 8 beams", "generate", {"captioner": "cap", "mbr_candidates": 8, "name": "mbr8"}, "mbr8")]
    rows = []
    for label, kind, params, name in runs:
        _job(ws, kind, params)
        _job(ws, "evaluate", {"generation": name, "name": f"eval.{name}"})
        rows.append(_row(ws, label, f"eval.{name}"))
    _job(ws, "train-captioner", {"objective": "scst", "init": "cap", "name": "scst", **scst})
    for label, params, name in (("SCST captioner, greedy", {}, "scst.greedy"),
                                ("SCST captioner, MBR over 8 beams", {"mbr_candidates": 8}, "scst.mbr8")):
        _job(ws, "generate", {"captioner": "scst", "name": name, **params})
        _job(ws, "evaluate", {"generation": name, "name": f"eval.{name}"})
        rows.append(_row(ws, label, f"eval.{name}"))
    _job(ws, "evaluate", {"human": "ucm", "split": "test", "distinct": True, "name": "human.ucm.test"})
    rows.append(_row(ws, "human, distinct=true (leave-one-out)", "human.ucm.test"))
    pairs = _pairs(ws, [("eval.scene.ucm.test", "eval.scst.greedy"), ("eval.scene.ucm.test", "eval.scst.mbr8"),
                        ("eval.greedy", "eval.scst.greedy")])
    return (f"UCM-captions test split, {epochs} epochs, SCST {_settings(scst)}, tokenizer and scores as `evaluate` "
            "(95% bootstrap intervals over images)\n" + _table(["system", "images", *COLUMNS], rows)
            + "\n\npaired bootstrap, CIDEr difference B - A [95%]\n" + _table(["B - A", "images", "CIDEr"], pairs))


def _settings(scst: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in scst.items()) or "defaults"


def _pairs(ws: Any, pairs: list[tuple[str, str]]) -> list[list[str]]:
    from engine.jobs.compare import compare_runs

    out = []
    for a, b in pairs:
        c = compare_runs(ws, a, b)
        d = c.rows["CIDEr"]
        out.append([f"{b} - {a}", str(c.images), f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"])
    return out


def synthetic(ws: Any, images: int, epochs: int, scst: dict[str, Any]) -> str:
    from workbench.cli.demo import demo_pipeline

    out = Path(ws.root) / "world"
    _job(ws, "synthesize", {"out": str(out), "images": images, "drone_images": 48, "seed": 0})
    _job(ws, "ingest-captions", {"path": str(out / "captions"), "name": "synthetic"})
    _job(ws, "ingest-drone", {"path": str(out / "drone"), "name": "synthetic-drone"})
    for kind, params, _, _ in demo_pipeline(fast=False):
        if kind == "train-captioner":
            params = {**params, "epochs": epochs}
        _job(ws, kind, params)
    _job(ws, "generate", {"captioner": "cap", "scenes": "scenes.synthetic", "mbr_candidates": 8, "name": "mbr.cap.test"})
    _job(ws, "train-captioner", {"objective": "scst", "init": "cap", "name": "scst", **scst})
    for params, name in (({}, "scst.greedy"), ({"mbr_candidates": 8}, "scst.mbr8")):
        _job(ws, "generate", {"captioner": "scst", "scenes": "scenes.synthetic", "name": name, **params})
    for name in ("mbr.cap.test", "scst.greedy", "scst.mbr8"):
        _job(ws, "evaluate", {"generation": name, "name": f"eval.{name}"})
    from engine.store.runs import get_run

    accuracy = get_run(ws.open_db(), "scenes.synthetic").metrics["accuracy"]  # type: ignore[union-attr]
    rows = [_row(ws, label, name) for label, name in (
        ("captioner, predicted scenes + composition, greedy", "eval.gen.cap.test"),
        ("captioner, the same, MBR over 8 beams", "eval.mbr.cap.test"),
        ("SCST captioner, greedy", "eval.scst.greedy"),
        ("SCST captioner, MBR over 8 beams", "eval.scst.mbr8"),
        ("kNN on compositions", "eval.knn.compose.seg.synthetic.test"),
        ("scene consensus, predicted scenes", "eval.scene.synthetic.test"))]
    knn, scene = "eval.knn.compose.seg.synthetic.test", "eval.scene.synthetic.test"
    pairs = _pairs(ws, [(knn, "eval.scst.greedy"), (scene, "eval.scst.greedy"), (knn, "eval.scst.mbr8"), (scene, "eval.scst.mbr8"),
                        (knn, "eval.mbr.cap.test"), (scene, "eval.mbr.cap.test")])
    return (f"synthetic world, {images} images, test split, classifier accuracy {accuracy:.3f} (all images), captioner {epochs} epochs, "
            f"SCST {_settings(scst)}\n" + _table(["system", "images", *COLUMNS], rows)
            + "\n\npaired bootstrap, CIDEr difference B - A [95%]\n" + _table(["B - A", "images", "CIDEr"], pairs))


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", choices=("ucm", "synthetic"))
    parser.add_argument("--images", type=int, default=960, help="synthetic: images in the world")
    parser.add_argument("--epochs", type=int, default=None, help="captioner epochs (ucm: 4, synthetic: 8)")
    parser.add_argument("--workspace", type=Path, help="keep the workspace here (default: a temporary folder)")
    parser.add_argument("--scst", action="append", default=[], metavar="K=V", help="a train-captioner param of the SCST run (repeatable)")
    args = parser.parse_args(argv)
    from engine.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(args.workspace or Path(tmp) / "ws")
        ws.init()
        start = time.perf_counter()
        scst = dict(a.split("=", 1) for a in args.scst)
        text = ucm(ws, args.epochs or 4, scst) if args.world == "ucm" else synthetic(ws, args.images, args.epochs or 8, scst)
        print(text)
        print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
