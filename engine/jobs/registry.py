"""The registered job kinds, by name."""

from __future__ import annotations

from engine.jobs.base import JobKind, ParamsError
from engine.jobs.kinds.captioning import BASELINE_KNN, GENERATE, TRAIN_CAPTIONER
from engine.jobs.kinds.composition import COMPOSE
from engine.jobs.kinds.evaluation import EVALUATE
from engine.jobs.kinds.exchange import EXPORT, IMPORT_GENERATIONS
from engine.jobs.kinds.ingest import INGEST_CAPTIONS, INGEST_DRONE
from engine.jobs.kinds.noop import NOOP
from engine.jobs.kinds.scenes import BASELINE_SCENE, CLASSIFY, TRAIN_SCENE_CLASSIFIER
from engine.jobs.kinds.segmentation import SEGMENT, TRAIN_SEGMENTER
from engine.jobs.kinds.synthesize import SYNTHESIZE

KINDS: dict[str, JobKind] = {
    k.name: k
    for k in (
        SYNTHESIZE, INGEST_CAPTIONS, INGEST_DRONE, TRAIN_SEGMENTER, SEGMENT, COMPOSE, TRAIN_CAPTIONER, GENERATE, BASELINE_KNN,
        IMPORT_GENERATIONS, EVALUATE, EXPORT, NOOP, TRAIN_SCENE_CLASSIFIER, CLASSIFY, BASELINE_SCENE,
    )
}


def get_kind(name: str) -> JobKind:
    """:raises ParamsError: listing the valid kinds"""
    try:
        return KINDS[name]
    except KeyError:
        raise ParamsError(f"unknown job kind {name!r}; valid: {', '.join(sorted(KINDS))}") from None
