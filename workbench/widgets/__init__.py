"""Widgets of the TUI, and the text helpers they share."""


def shorten(name: str, room: int) -> str:
    """A name cut to ``room`` characters in its middle, so both ends stay visible: the family's
    start and the split, version or dataset at the end, where runs differ most
    (``knn.compose.seg.synthetic.test`` -> ``knn.compose…synthetic.test``)."""
    if len(name) <= room:
        return name
    if room <= 1:
        return "…"[:room]
    tail = (room - 1) // 2
    return name[: room - 1 - tail] + "…" + name[len(name) - tail :]
