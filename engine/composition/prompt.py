"""Render a composition as prompt text for the captioner.

Format ``v1`` (stored with every composition as ``prompt_version``), one line per class, largest
area first, classes under the composition's minimum area already left out:

    Vegetation 62.1% 1 region, dominant, circle 0.50 0.50 r0.71
    Water 21.4% 1 region, left of Vegetation, circle 0.22 0.48 r0.30
    Artificial Surface 12.0% 6 regions, lower-right of Vegetation, circle 0.70 0.72 r0.35

Numbers have fixed precision and the order is by area then class index, so the same mask
always gives the same text. An empty composition renders as ``(nothing recognised)``.
"""

from __future__ import annotations

from engine.composition.compose import Composition

PROMPT_VERSION = "v1"


def render_prompt(comp: Composition) -> str:
    dominant = comp.dominant
    if dominant is None:
        return "(nothing recognised)"
    lines = []
    for part in comp.parts:
        regions = f"{part.regions} region{'s' if part.regions != 1 else ''}"
        where = "dominant" if part.position is None else f"{part.position} {dominant.name}"
        x, y, r = part.circle
        lines.append(f"{part.name} {part.area:.1f}% {regions}, {where}, circle {x:.2f} {y:.2f} r{r:.2f}")
    return "\n".join(lines)
