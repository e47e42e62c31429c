"""PTB tokenization as the COCO caption toolkit does it, with or without Java.

The toolkit runs Stanford CoreNLP 3.4.1's PTBTokenizer (``-preserveLines -lowerCase``) and then
drops the punctuation tokens in ``PUNCTUATIONS``. Because lower-casing happens before that filter,
bracket tokens survive as ``-lrb-``, ``-rrb-`` ... (the filter lists them in upper case); we keep
that quirk, since scores must match the toolkit's.

:func:`ptb_tokenize` reimplements the tokenizer's rules that occur in captions (clitics and
``n't``, brackets, quotes, currency and percent signs, abbreviations with periods, ellipses,
numbers with separators); it is checked token for token against the Java tokenizer on the 5,469
RSICD val references (see tests/engine/evaluation).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence

PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])
"""The toolkit's list, verbatim (case-sensitive)."""

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. prof. st. jr. sr. etc. vs. inc. ltd. co. corp. no. fig. mt. ave. rd. jan. feb. mar. apr. "
    "jun. jul. aug. sep. sept. oct. nov. dec. e.g. i.e. a.m. p.m.".split()
)
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'m|'ll|'d)$")
_LETTER_DOTS = re.compile(r"^(?:[a-z]\.)+[a-z]?\.?$|^[a-z]\.$")
_NUMBER = re.compile(r"^[+-]?\d[\d,.]*\d$|^\d$")
_SPLIT_OFF = re.compile(r"(\.\.\.|--|[,;:!?\"()\[\]{}$%])")


def _period(word: str, last: bool) -> list[str]:
    """Split a trailing period off a word unless the word is an abbreviation."""
    if not word.endswith(".") or word == ".":
        return [word]
    if _LETTER_DOTS.match(word) or word in _ABBREVIATIONS:
        return [word]
    return [word[:-1], "."]


def _word(token: str) -> list[str]:
    """Clitics: "isn't" -> "is n't", "it's" -> "it 's", "'tis" -> "'t is", "rock'n'roll"."""
    if token == "'tis":
        return ["'t", "is"]
    if token == "rock'n'roll":
        return ["rock", "'n'", "roll"]
    match = _CLITIC.match(token)
    if match and not match.group(1).endswith("'"):
        return [match.group(1), match.group(2)]
    return [token]


def ptb_tokens(text: str) -> list[str]:
    """All PTB tokens of one caption, lower-cased, punctuation still in."""
    out: list[str] = []
    chunks = text.lower().split()
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        # "no.1" -> "no. 1": an abbreviation glued to a number
        glued = re.match(r"^(no\.)(\d.*)$", chunk)
        parts = [glued.group(1), glued.group(2)] if glued else [chunk]
        for part in parts:
            for piece in _SPLIT_OFF.split(part):
                if not piece:
                    continue
                if piece in _BRACKETS:
                    out.append(_BRACKETS[piece])
                elif piece == '"':
                    out.append("``")
                elif _SPLIT_OFF.fullmatch(piece):
                    out.append(piece)
                else:
                    out.extend(_quote_and_word(piece, last))
    return _rejoin_numbers(out)


_CLITICS = ("'s", "'re", "'ve", "'m", "'ll", "'d")


def _quote_and_word(piece: str, last: bool) -> list[str]:
    """Single quotes around a word become quote tokens; clitics and periods split off."""
    if piece in _CLITICS or piece == "'tis":
        return _word(piece) if piece == "'tis" else [piece]
    lead: list[str] = []
    while piece[:1] in ("'", "`") and len(piece) > 1 and not piece.startswith("'n'"):
        lead.append("`")
        piece = piece[1:]
    trail: list[str] = []
    while piece.endswith("'") and len(piece) > 1 and not piece.endswith("'n'"):
        trail.insert(0, "'")
        piece = piece[:-1]
    words: list[str] = []
    for w in _period(piece, last):
        words.extend(_word(w) if w != "." else ["."])
    return [*lead, *words, *trail]


def _rejoin_numbers(tokens: list[str]) -> list[str]:
    """"1 , 000" was split by the comma rule; numbers keep their separators ("1,000", "3.5")."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if (
            i + 2 < len(tokens) and tokens[i + 1] == "," and tokens[i].isdigit() and re.fullmatch(r"\d{3}", tokens[i + 2])
        ):
            out.append(tokens[i] + "," + tokens[i + 2])
            i += 3
            continue
        out.append(tokens[i])
        i += 1
    return out


def ptb_tokenize(text: str) -> str:
    """The toolkit's tokenized form of one caption: PTB tokens, lower-cased, punctuation removed."""
    return " ".join(t for t in ptb_tokens(text) if t not in PUNCTUATIONS)


def java_available() -> bool:
    return shutil.which("java") is not None


def tokenize_all(captions: Mapping[object, Sequence[str]], *, use_java: bool | None = None) -> tuple[dict[object, list[str]], str]:
    """Tokenize ``{key: [caption, ...]}`` the toolkit's way.

    :param use_java: force the Java tokenizer (True) or the Python one (False); default: Java when
        installed
    :returns: ``({key: [tokenized, ...]}, "ptb-java" | "ptb-python")``
    """
    if use_java is None:
        use_java = java_available()
    if use_java:
        flat = [c for caps in captions.values() for c in caps]
        lines = java_ptb_lines(flat)
        out: dict[object, list[str]] = {}
        it = iter(lines)
        for k, caps in captions.items():
            out[k] = [" ".join(w for w in next(it).rstrip().split(" ") if w not in PUNCTUATIONS) for _ in caps]
        return out, "ptb-java"
    return {k: [ptb_tokenize(c) for c in caps] for k, caps in captions.items()}, "ptb-python"


def java_ptb_lines(captions: Sequence[str]) -> list[str]:
    """The toolkit's Java PTBTokenizer run, one output line per caption.

    Same jar and options as ``pycocoevalcap.tokenizer.PTBTokenizer``; run here so its progress
    chatter on stderr stays out of the terminal and no temporary file is written into the
    installed package. Newlines inside a caption become spaces, as the toolkit does.
    """
    import os
    import subprocess
    import tempfile

    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = os.path.join(os.path.dirname(os.path.abspath(ptb.__file__)), ptb.STANFORD_CORENLP_3_4_1_JAR)
    text = "\n".join(c.replace("\n", " ") for c in captions)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as fh:
        fh.write(text)
        path = fh.name
    try:
        done = subprocess.run(
            ["java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase", path],
            capture_output=True, check=True,
        )
    finally:
        os.unlink(path)
    lines = done.stdout.decode("utf-8").split("\n")
    if len(lines) < len(captions):
        raise RuntimeError(f"PTBTokenizer returned {len(lines)} lines for {len(captions)} captions")
    return lines[: len(captions)]
