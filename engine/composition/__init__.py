"""Composition: a class mask turned into area shares, places, region counts and relative
positions, and rendered as a compact prompt text."""

from __future__ import annotations

from engine.composition.compose import ClassPart, Composition, compose, feature_vector, position_word
from engine.composition.prompt import PROMPT_VERSION, render_prompt

__all__ = ["PROMPT_VERSION", "ClassPart", "Composition", "compose", "feature_vector", "position_word", "render_prompt"]
