"""Light text helpers for references: a tokenizer for sources without tokens, and the key that
decides whether two references of one image are the same caption.

This is not the evaluation tokenizer (that one must match the PTB tokenizer token for token and
lives in ``engine.evaluation``); it only feeds vocabulary counts and duplicate detection.
"""

from __future__ import annotations

import re
import string

_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_PUNCTUATION = str.maketrans(string.punctuation, " " * len(string.punctuation))
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


def simple_tokens(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped ("A pond, left." -> ["a", "pond", "left"])."""
    return _WORD.findall(text.lower())


def duplicate_key(tokens: str) -> str:
    """Two references with the same key are the same caption (case and punctuation ignored).

    :param tokens: the caption's tokens (or text), space-separated
    """
    lowered = tokens.lower()
    if len(lowered.translate(_DROP_PUNCTUATION)) == len(lowered) and "  " not in lowered and lowered == lowered.strip():
        return lowered  # no punctuation, single spaces: the common case (this runs 55k times for RSICD)
    return " ".join(lowered.translate(_PUNCTUATION).split())
