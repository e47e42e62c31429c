"""PTB tokenization as the COCO caption toolkit does it, with or without Java.

The toolkit runs Stanford CoreNLP 3.4.1's PTBTokenizer (``-preserveLines -lowerCase``) and then
drops the punctuation tokens in ``PUNCTUATIONS``. Because lower-casing happens before that filter,
bracket tokens survive as ``-lrb-``, ``-rrb-`` ... (the filter lists them in upper case); we keep
that quirk, since scores must match the toolkit's.

Line breaks. The toolkit writes one caption per line for the Java tokenizer, so a ``\\r``,
U+2028 or any other line break inside a caption shifted every later caption against its
references (scores silently wrong). Every line break and NUL becomes a space here, in both
tokenizers (:func:`clean`), and the Java output must have exactly one line per caption.

:func:`ptb_tokens` reimplements the tokenizer's rules for the text captions hold, scanning the
original case (``R&D`` stays whole, ``a&b`` does not): clitics and ``n't``, ``cannot`` / ``gonna``
style splits, brackets, opening and closing quotes, HTML entities, currency, percent and other
symbols, abbreviations with periods, numbers with separators. It is checked token for token
against the Java tokenizer on every reference in ``../shared/data`` and a list of tricky strings
(tests/engine/evaluation). Text with characters outside the checked set (:func:`exact_for`) is
tokenized as well as we can and its scores are labelled ``ptb-python (approximate)``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence

PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"])
"""The toolkit's list, verbatim (case-sensitive)."""

_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00]")
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'"}
_UNICODE = {"\u2026": "...", "\u2014": "--", "\u2013": "--", "\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'", "\u00bd": "1/2"}
_ABBREVIATIONS = frozenset(
    "mr. mrs. ms. dr. prof. st. jr. sr. etc. vs. inc. ltd. co. corp. fig. mt. ave. rd. jan. feb. mar. apr. "
    "jun. jul. aug. sep. sept. oct. nov. dec. e.g. i.e. a.m. p.m.".split()
)
_SPLIT_WORDS = {"cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "lemme": 3, "gimme": 3}
"""Words PTB splits in two (cannot -> can not, gonna -> gon na), at this many letters."""
_CLITIC = re.compile(r"(?:'(?:s|re|ve|m|ll|d)|n't)(?![A-Za-z])", re.IGNORECASE)
_APOSTROPHE_WORDS = {"'em": ["'em"], "'tis": ["'t", "is"], "'twas": ["'t", "was"], "'n'": ["'n'"], "'n": ["'n"],
                     "y'all": ["y'", "all"]}
_CHECKED = re.compile(r"^[A-Za-z0-9_ ,.;:!?'\"()\[\]{}\-&%$]*$")
"""Characters whose handling is checked against Java; other text is tokenized approximately."""
_UNCHECKED_CONSTRUCTS = [  # (pattern, an example Java tokenizes otherwise)
    (r"\.\.\.\S|\.\.\w|[!?]\w|[!?]{2}", "x...y  A..b  hello!world  3.5!!"),
    (r"&(?!amp;|lt;|gt;|quot;|apos;)[a-z]|&[A-Z]+&|&[A-Z]+\w*'", "a&b  AT&TAT&T  R&DI'm"),
    (r"\w'(?!(?:s|re|ve|m|ll|d|t)(?![A-Za-z]))[A-Za-z]|-\w*n't", "o'clock  they'retrees  well-knowndon't"),
    (r"(?<![\w.,:]):\d|[:;]\d|[A-Za-z]\d+[:,.]\d|\d\.[A-Za-z]|\d[A-Za-z]+\.", ":10km  building12:30  3.x  100Dr."),
    (r"[\d.]\d[A-Za-z]*-|[A-Za-z]\.[A-Za-z]+[-']|\.-|-[A-Z]\.", "3.5well-known  U.S.well-known  A.can't  i.e.-100"),
    (r"[}\])]\w|[;:][{(\[\]})]|nn't|,-\w|\.,\w|[A-Za-z']-\d", "}etc.  ;{  :)  cars,-we  ll-10km"),
    (r"[a-z]{2,}\.[;:,]|[a-z][A-Z]\.|(?i:[a-z](?:mr|mrs|ms|dr|prof|st)\.|(?:etc|e\.g|i\.e)\.[a-z])", "cars.,  buildingU.S.  theMr."),
    (r"(?i:(?:gonna|gotta|wanna|cannot|lemme|gimme)')", "gonna's"),
    # Abbreviations where PTB guesses whether a sentence ends: before a capital ("etc. St."), and at
    # the end of a caption, where Java's lookahead crosses into the *next* caption of its input.
    (r"\b(?:[A-Za-z]+|[A-Za-z](?:\.[A-Za-z])+)\.\s+[A-Z]|\b[Nn]o\.(?!\s*\d)", "A. Mr.  etc. St.  a no."),
    (rf"(?i:\b[a-z]|[a-z](?:\.[a-z])+|\b(?:{'|'.join(sorted(a.rstrip('.').replace('.', '[.]') for a in _ABBREVIATIONS))}))\.\W*$", "are A."),
]
_UNCHECKED = re.compile("|".join(f"(?:{p})" for p, _ in _UNCHECKED_CONSTRUCTS))
"""Constructs inside the checked characters that the scanner does not reproduce exactly."""
_WORD = re.compile(r"\w+(?:[-/]\w+)*")
_NUMBER = re.compile(r"[+-]?\d+(?:[,.:]\d+)+|(?<!\w)[+-]\d+|[,.]\d+(?:[,.:]\d+)*")
_DOTTED = re.compile(r"[A-Za-z]+(?:\.[A-Za-z]+)+(?:\.(?!\.\.))?")
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos);")


def clean(text: str) -> str:
    """One line: line breaks (any of Unicode's) and NUL become spaces."""
    return _LINE_BREAKS.sub(" ", text)


def exact_for(text: str) -> bool:
    """True when :func:`ptb_tokens` is known to give the Java tokenizer's tokens for ``text``."""
    return bool(_CHECKED.match(text)) and not _UNCHECKED.search(text)


def _split_word(word: str) -> list[str]:
    """"cannot" -> "can not", "gonna" -> "gon na"; other words stay whole."""
    cut = _SPLIT_WORDS.get(word.lower())
    return [word[:cut], word[cut:]] if cut else [word]


def _word(chunk: str, start: int, end: int) -> tuple[list[str], int]:
    """The word ``chunk[start:end]`` with what an apostrophe glues to it: clitics ("isn't" -> "is
    n't", "shouldn't've" -> "should n't 've") and "more'n"."""
    word = chunk[start:end]
    rest = chunk[end:]
    if word[-1:].lower() == "n" and rest[:2].lower() == "'t" and not rest[2:3].isalpha():
        tokens, end = [*_split_word(word[:-1]), word[-1] + rest[:2]], end + 2
    elif rest.startswith("'n'"):
        return _split_word(word), end  # rock'n'roll: the 'n' is a token of its own
    elif rest[:2].lower() == "'n" and not rest[2:3].isalpha():
        return [*_split_word(word), rest[:2]], end + 2  # more'n
    else:
        tokens = _split_word(word)
    while (m := _CLITIC.match(chunk, end)) is not None:
        tokens.append(m.group())
        end = m.end()
    return tokens, end


def _quote(chunk: str, pos: int, mark: str) -> str:
    """A quote that starts a chunk before more text opens (`` or `); every other one closes."""
    after = chunk[pos + 1 :]
    if mark == '"':  # opens before a word, a number or a currency sign; closes before anything else
        return "``" if re.match(r"[\w$]", after) else "''"
    if mark == "`":
        return "`"
    # A single quote opens before a word ('hi', 'U.S.), or one letter closed by another quote
    # ('a'); before a lone letter it closes ('a -> ' a).
    return "`" if re.match(r"[^\W\d_][^\W\d_.'&]", after) or re.match(r"[^\W\d_][.'&]", after) else "'"


def _scan(chunk: str, context: str = "end") -> list[str]:
    """PTB tokens of one whitespace-free piece, in its original case.

    :param context: what the next piece starts with: "number", "word", or "end" of text
    """
    out: list[str] = []
    pos = 0
    while pos < len(chunk):
        rest = chunk[pos:]
        lower = rest.lower()
        special = next((w for w in _APOSTROPHE_WORDS
                        if lower.startswith(w) and (w == "'n'" or not rest[len(w) : len(w) + 1].isalpha())), None)
        if special is not None and (pos == 0 or special == "'n'"):
            out.extend(_APOSTROPHE_WORDS[special])
            pos += len(special)
            continue
        if (m := _CLITIC.match(chunk, pos)) is not None and (pos == 0 or not chunk[pos - 1].isalnum()):
            out.append(m.group())  # "'s" or "n't" on its own
            pos = m.end()
            continue
        if pos == 0 and (m := re.match(r"'[0-9]0s(?!\w)", rest)) is not None:
            out.append(m.group())  # '90s
            pos = m.end()
            continue
        if (m := _ENTITY.match(chunk, pos)) is not None:
            char = _ENTITIES[m.group()]
            out.append(_quote(chunk, m.end() - 1, char) if char in "\"'" else char)
            pos = m.end()
            continue
        if (m := re.match(r"[A-Z]+&[A-Z]+", rest)) is not None:
            out.append(m.group())  # R&D, AT&T
            pos += m.end()
            continue
        if re.match(r"no\.(\d|[;:])", lower) or (lower == "no." and context == "number"):
            out.append(rest[:3])  # "no." before a number is an abbreviation: "no. 5", "no.1" -> "no. 1"
            pos += 3
            continue
        if rest.startswith("''"):
            out.append("''")
            pos += 2
            continue
        if (m := _DOTTED.match(chunk, pos)) is not None:
            text = m.group()
            single = all(len(part) == 1 for part in text.rstrip(".").split("."))
            if text.endswith(".") and not single and text.lower() not in _ABBREVIATIONS:
                out.extend([text[:-1], "."])  # ok. -> ok .   ab.cd. -> ab.cd .
            else:
                out.append(text)  # u.s.  e.g.  a.b
            pos = m.end()
            continue
        if (m := _NUMBER.match(chunk, pos)) is not None:
            end = m.end()
            glued = re.match(r"-[A-Za-z][A-Za-z0-9_-]*", chunk[end:])
            if glued:  # 5.5-meter
                end += glued.end()
            out.append(chunk[pos:end])  # 1,000.5  12:30  (3.5m: the unit follows as a word)
            pos = end
            while (c := _CLITIC.match(chunk, pos)) is not None:  # 1,000's
                out.append(c.group())
                pos = c.end()
            continue
        if (m := _WORD.match(chunk, pos)) is not None:
            end = m.end()
            if chunk[end : end + 1] == "." and (chunk[pos : end + 1].lower() in _ABBREVIATIONS or (end - pos == 1 and chunk[pos].isalpha())):
                out.append(chunk[pos : end + 1])  # Dr.  etc.  A.
                pos = end + 1
                continue
            tokens, pos = _word(chunk, pos, end)
            out.extend(tokens)
            continue
        if rest.startswith("..."):
            out.append("...")
            pos += 3
            continue
        if (m := re.match(r"-+", rest)) is not None:
            out.append("--" if m.end() >= 2 else "-")
            pos += m.end()
            continue
        char = rest[0]
        out.append(_quote(chunk, pos, char) if char in "\"'`" else _BRACKETS.get(char, char))
        pos += 1
    return out


def ptb_tokens(text: str) -> list[str]:
    """All PTB tokens of one caption, lower-cased, punctuation still in."""
    for char, repl in _UNICODE.items():
        text = text.replace(char, repl)
    out: list[str] = []
    chunks = clean(text).split()
    for i, chunk in enumerate(chunks):
        following = chunks[i + 1][:1] if i + 1 < len(chunks) else ""
        context = "end" if not following else "number" if following.isdigit() else "word"
        out.extend(t.lower() for t in _scan(chunk, context))
    return _glue_apostrophe_ends(out)


def _glue_apostrophe_ends(tokens: list[str]) -> list[str]:
    """"ol'" and "d'" keep their apostrophe (words PTB knows to end in one)."""
    out: list[str] = []
    for t in tokens:
        if t == "'" and out and out[-1] in ("ol", "d"):
            out[-1] += "'"
        else:
            out.append(t)
    return out


_PLAIN = re.compile(r"[A-Za-z ]*(?: \.)? *")
"""Words of letters only, perhaps a final period on its own: PTB splits none of them but
``_SPLIT_WORDS``, and the period is punctuation (most captions, a model's nearly all)."""


def ptb_tokenize(text: str) -> str:
    """The toolkit's tokenized form of one caption: PTB tokens, lower-cased, punctuation removed."""
    if _PLAIN.fullmatch(text):
        words = text.lower().split()
        if "." in text:
            words = [w for w in words if w != "."]
        if _SPLIT_WORDS.keys().isdisjoint(words):
            return " ".join(words)
    return " ".join(t for t in ptb_tokens(text) if t not in PUNCTUATIONS)


def java_available() -> bool:
    return shutil.which("java") is not None


PYTHON_EXACT = "ptb-python"
PYTHON_APPROXIMATE = "ptb-python (approximate)"


def tokenize_all(captions: Mapping[object, Sequence[str]], *, use_java: bool | None = None) -> tuple[dict[object, list[str]], str]:
    """Tokenize ``{key: [caption, ...]}`` the toolkit's way.

    :param use_java: force the Java tokenizer (True) or the Python one (False); default: Java when
        installed
    :returns: ``({key: [tokenized, ...]}, "ptb-java" | "ptb-python" | "ptb-python (approximate)")``;
        the Python tokenizer says approximate when some caption holds text it is not checked on
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
    exact = all(exact_for(clean(c)) for caps in captions.values() for c in caps)
    return {k: [ptb_tokenize(c) for c in caps] for k, caps in captions.items()}, PYTHON_EXACT if exact else PYTHON_APPROXIMATE


def java_ptb_lines(captions: Sequence[str]) -> list[str]:
    """The toolkit's Java PTBTokenizer run, one output line per caption.

    Same jar and options as ``pycocoevalcap.tokenizer.PTBTokenizer``; run here so its progress
    chatter on stderr stays out of the terminal and no temporary file is written into the
    installed package. Every line break inside a caption becomes a space (:func:`clean`).

    :raises RuntimeError: if the tokenizer does not give one line per caption
    """
    import os
    import subprocess
    import tempfile

    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = os.path.join(os.path.dirname(os.path.abspath(ptb.__file__)), ptb.STANFORD_CORENLP_3_4_1_JAR)
    # A last line the tokenizer must echo: proves the output kept one line per caption, even when
    # the final caption is empty.
    text = "\n".join([*(clean(c) for c in captions), "end"])
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False, newline="\n") as fh:
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
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(captions) + 1 or lines[-1].strip() != "end":
        raise RuntimeError(f"PTBTokenizer returned {len(lines) - 1} lines for {len(captions)} captions")
    return lines[:-1]
