"""Batched caption generation: left-padded prompts, greedy or beam search, deterministic.

Prompts are sorted by length before batching (less padding, and a batch's result does not depend
on which other prompts share it beyond padding, which the attention mask and positions hide);
results come back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 40
    num_beams: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    candidates: int = 1
    """Captions returned per prompt: the best beams, or samples (``sample``)."""
    sample: bool = False
    """Draw the candidates by sampling (seeded per batch, so deterministic) instead of beam search."""
    seed: int = 0
    top_p: float = 0.95


def generate_captions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationSettings,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    progress: Callable[[int, int], None] = lambda i, n: None,
    should_stop: Callable[[], bool] = lambda: False,
    prompt_budget: int | None = None,
) -> tuple[list[str], int] | None:
    """Captions for ``prompts`` in order, and the number of tokens generated; None if stopped."""
    out = generate_candidates(model, tokenizer, prompts, settings, batch_size=batch_size, device=device, progress=progress,
                              should_stop=should_stop, prompt_budget=prompt_budget)
    return None if out is None else ([c[0] for c in out[0]], out[1])


def generate_candidates(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    settings: GenerationSettings,
    *,
    batch_size: int = 32,
    device: str = "cpu",
    progress: Callable[[int, int], None] = lambda i, n: None,
    should_stop: Callable[[], bool] = lambda: False,
    prompt_budget: int | None = None,
) -> tuple[list[list[str]], int] | None:
    """``settings.candidates`` captions per prompt, in order (best beam first), and the number of
    tokens generated; None if stopped.

    :param prompt_budget: the captioner's prompt budget: prompts are fitted to it as in training
        (:func:`engine.captioning.data.fit_prompt`)
    """
    import torch

    from engine.captioning.data import fit_prompt, prompt_length

    tokenizer.padding_side = "left"
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    if prompt_budget is not None:
        length = prompt_length(tokenizer)
        prompts = [fit_prompt(p, length, prompt_budget) for p in prompts]
    encoded = [bos + tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    k = settings.candidates
    out: list[list[str]] = [[] for _ in prompts]
    produced = 0
    for start in range(0, len(order), batch_size):
        if should_stop():
            return None
        idx = order[start : start + batch_size]
        how: dict[str, Any] = {"do_sample": False, "num_beams": max(settings.num_beams, 1 if settings.sample else k)}
        if settings.sample:
            torch.manual_seed(settings.seed * 100_003 + start)  # the same draws for the same batch, every time
            how = {"do_sample": True, "top_p": settings.top_p, "num_beams": 1}
        rows = generate_ids(model, tokenizer, [encoded[i] for i in idx], k, max_new_tokens=settings.max_new_tokens, device=device,
                            repetition_penalty=settings.repetition_penalty, no_repeat_ngram_size=settings.no_repeat_ngram_size, **how)
        for row, tokens in enumerate(rows):
            produced += len(tokens)
            out[idx[row // k]].append(decode(tokenizer, tokens))
        progress(min(start + batch_size, len(order)), len(order))
    return out, produced


def decode(tokenizer: Any, tokens: Sequence[int]) -> str:
    """A caption's text from its token ids, whitespace made single spaces."""
    return " ".join(tokenizer.decode(list(tokens), skip_special_tokens=True).split())


def generate_ids(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], k: int, *, max_new_tokens: int, device: str,
                 keep_eos: bool = False, **how: Any) -> list[list[int]]:
    """``k`` continuations of each tokenized prompt (BOS included), in order (``k`` rows per
    prompt): their new token ids, cut before EOS, padding dropped; with ``keep_eos`` the tokens
    exactly as generated, up to and including the first EOS (what a policy gradient scores).
    ``how``: ``model.generate``'s decoding options (``do_sample``, ``num_beams``, ``top_p``, ...)."""
    import torch

    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):  # left-padded: every prompt ends where generation starts
        ids[row, width - len(p) :] = torch.tensor(list(p))
        mask[row, width - len(p) :] = 1
    # BOS and padding never belong inside a caption: a model that emits one would have it dropped
    # from the decoded text, hiding a cut ("are two freeways"), so they are never drawn.
    never = sorted({t for t in (pad, tokenizer.bos_token_id) if t is not None and t != tokenizer.eos_token_id})
    with torch.inference_mode():
        generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_return_sequences=k,
                                   max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
                                   suppress_tokens=never or None, **how)
    out = []
    for row in generated[:, width:].cpu().tolist():
        if keep_eos:
            out.append(row[: row.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in row else row)
            continue
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        out.append([t for t in row if t != pad])
    return out
