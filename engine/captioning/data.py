"""Training examples: (prompt, caption) pairs, and their token ids with the loss on the caption only.

Every reference of every training image is used (five per RSICD image), identical pairs once.
The prompt says what the model is given; the caption follows ``Caption:`` and ends with EOS.

A prompt longer than its token budget loses its last composition lines (the smallest classes)
until it fits, by :func:`fit_prompt`, in training and in generation alike, so the model is always
asked the way it was taught; BOS, the scene line, the dominant class and ``Caption:`` stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROMPT_SOURCES = ("composition", "scene", "both")
IGNORE_INDEX = -100


def build_prompt(source: str, scene: str | None, composition: str | None) -> str:
    """The model's input text for one image (format stable: stored prompts stay valid)."""
    parts = []
    if source in ("scene", "both"):
        parts.append(f"Scene: {scene or 'unknown'}")
    if source in ("composition", "both"):
        parts.append(f"Composition:\n{composition or '(nothing recognised)'}")
    return "\n".join(parts) + "\nCaption:"


def fit_prompt(prompt: str, length: Callable[[str], int], budget: int) -> str:
    """``prompt`` with its last composition lines dropped until ``length(prompt) <= budget``.

    The composition lists classes by area, largest first, so the lines dropped are the least
    important; the scene line, the first (dominant) class and ``Caption:`` are always kept, even
    when the prompt still does not fit.
    """
    if length(prompt) <= budget:
        return prompt
    lines = prompt.split("\n")
    if "Composition:" not in lines:
        return prompt
    first = lines.index("Composition:") + 1  # the dominant class's line
    keep = len(lines) - 1  # lines before "Caption:"
    while keep > first + 1:
        keep -= 1
        candidate = "\n".join([*lines[:keep], lines[-1]])
        if length(candidate) <= budget:
            return candidate
    return "\n".join([*lines[: first + 1], lines[-1]])


def prompt_length(tokenizer: Any) -> Callable[[str], int]:
    """Tokens of a prompt as the model sees it (BOS included)."""
    extra = 1 if tokenizer.bos_token_id is not None else 0
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids) + extra


def prompt_budget(captions: Sequence[str], tokenizer: Any, max_length: int) -> int:
    """Tokens left for the prompt: ``max_length`` minus the longest caption with its EOS (at most
    half of ``max_length``). Stored with the captioner, so generation fits prompts the same way."""
    longest = max((len(tokenizer(" " + c, add_special_tokens=False).input_ids) + 1 for c in captions), default=1)
    return max_length - min(longest, max_length // 2)


@dataclass(frozen=True)
class Example:
    prompt: str
    caption: str


def make_examples(items: Iterable[tuple[str, Sequence[str]]]) -> list[Example]:
    """Pairs of each prompt with each of its references; duplicates (same prompt and caption) once."""
    seen: set[tuple[str, str]] = set()
    out = []
    for prompt, captions in items:
        for caption in captions:
            text = " ".join(caption.split()).rstrip(" .")
            key = (prompt, text.lower())
            if text and key not in seen:
                seen.add(key)
                out.append(Example(prompt, text))
    return out


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode(examples: Sequence[Example], tokenizer: Any, max_length: int, budget: int | None = None) -> list[Encoded]:
    """Token ids of prompt + " " + caption + EOS; labels mask the prompt (loss on the caption only).

    Prompts are fitted to ``budget`` tokens (default :func:`prompt_budget` of these captions) by
    :func:`fit_prompt`; a caption is cut to the room left, keeping its EOS.
    """
    eos = tokenizer.eos_token_id
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    if budget is None:
        budget = prompt_budget([e.caption for e in examples], tokenizer, max_length)
    length = prompt_length(tokenizer)
    fitted: dict[str, list[int]] = {}  # five references share a prompt
    out = []
    for ex in examples:
        prompt = fitted.get(ex.prompt)
        if prompt is None:
            prompt = fitted[ex.prompt] = bos + tokenizer(fit_prompt(ex.prompt, length, budget), add_special_tokens=False).input_ids
        caption = tokenizer(" " + ex.caption, add_special_tokens=False).input_ids
        room = max(1, max_length - len(prompt))
        caption = [*caption[: room - 1], eos]
        out.append(Encoded(prompt + caption, [IGNORE_INDEX] * len(prompt) + caption))
    return out


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int, *, mega: int = 50) -> list[list[int]]:
    """Batches of similar lengths (little padding) in random order.

    Indices are shuffled, cut into mega-batches of ``mega * batch_size``, each sorted by length and
    cut into batches; the batch order is shuffled again so lengths do not trend through an epoch.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    batches = []
    size = mega * batch_size
    for start in range(0, len(order), size):
        chunk = sorted(order[start : start + size].tolist(), key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = np.random.default_rng(seed).permutation(n).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors for training: input_ids, attention_mask, labels."""
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
