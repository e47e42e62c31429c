"""The classifier: an smp encoder (any of smp's names, or tu-<timm model>), global average
pooling of its last feature map, dropout and a linear layer over the scenes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.segmentation.errors import SegmentationError


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild the network; stored with every checkpoint."""

    encoder: str = "mobilenet_v2"
    scenes: tuple[str, ...] = ()
    encoder_weights: str | None = None
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scenes": list(self.scenes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        return cls(**{**data, "scenes": tuple(data["scenes"])})


def build_classifier(config: ClassifierConfig) -> Any:
    """The ``torch.nn.Module`` for ``config``.

    :raises SegmentationError: for an unknown encoder (the message lists valid ones), or weights
        that are not in the local cache
    """
    import torch
    from segmentation_models_pytorch.encoders import get_encoder

    from engine.segmentation.model import check_names

    check_names("unet", config.encoder)
    try:
        encoder = get_encoder(config.encoder, in_channels=3, depth=5, weights=config.encoder_weights)
    except (KeyError, ValueError, RuntimeError, OSError) as exc:
        raise SegmentationError(f"cannot build encoder {config.encoder}: {str(exc).splitlines()[0]}"
                                + (" (ImageNet weights must be in the local cache; nothing is downloaded)" if config.encoder_weights else "")) from exc

    class SceneClassifier(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Sequential(torch.nn.Dropout(config.dropout), torch.nn.Linear(encoder.out_channels[-1], len(config.scenes)))

        def forward(self, x: Any) -> Any:
            features = self.encoder(x)[-1]  # (B, C, h, w)
            return self.head(features.mean((2, 3)))

    return SceneClassifier()


def imagenet_cached(encoder: str) -> bool:
    """Whether smp's ImageNet weights of ``encoder`` are in the local Hugging Face cache (nothing is
    downloaded to find out)."""
    try:
        from huggingface_hub import try_to_load_from_cache
        from segmentation_models_pytorch.encoders import encoders
    except ImportError:
        return False
    settings = encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet", {})
    repo = settings.get("repo_id")
    if not repo:
        return False
    found = try_to_load_from_cache(repo, "config.json", revision=settings.get("revision"))
    return isinstance(found, str)
