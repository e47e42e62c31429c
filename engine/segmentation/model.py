"""Build a segmentation model from segmentation-models-pytorch by architecture and encoder name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.segmentation.errors import SegmentationError


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; stored with every checkpoint."""

    arch: str = "unet"
    encoder: str = "mobilenet_v2"
    classes: int = 10
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decoder_channels"] = list(self.decoder_channels) if self.decoder_channels else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        dc = data.get("decoder_channels")
        return cls(**{**data, "decoder_channels": tuple(dc) if dc else None})


def architectures() -> list[str]:
    import segmentation_models_pytorch as smp

    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


def encoders() -> list[str]:
    from segmentation_models_pytorch.encoders import get_encoder_names

    return list(get_encoder_names())


def check_names(arch: str, encoder: str) -> None:
    """:raises SegmentationError: listing the valid names when one is unknown"""
    if arch.lower() not in architectures():
        raise SegmentationError(f"arch={arch!r} is not an smp architecture; valid: {', '.join(architectures())}")
    if encoder not in encoders() and not encoder.startswith("tu-"):
        shown = ", ".join(encoders()[:30])
        raise SegmentationError(
            f"encoder={encoder!r} is not an smp encoder; valid include: {shown}, ... "
            "(and any timm model as tu-<name>)"
        )


def build_model(config: ModelConfig) -> Any:
    """The ``torch.nn.Module`` for ``config``.

    ``encoder_weights`` (e.g. "imagenet") are fetched by smp from its hub cache; offline, leave it
    None or pre-populate the cache.
    """
    import segmentation_models_pytorch as smp

    check_names(config.arch, config.encoder)
    kwargs: dict[str, Any] = {}
    if config.decoder_channels and config.arch.lower() in ("unet", "unetplusplus", "manet"):
        kwargs["decoder_channels"] = list(config.decoder_channels)
    try:
        return smp.create_model(
            config.arch, encoder_name=config.encoder, encoder_weights=config.encoder_weights,
            in_channels=3, classes=config.classes, **kwargs,
        )
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise SegmentationError(f"cannot build {config.arch}/{config.encoder}: {exc}") from exc
