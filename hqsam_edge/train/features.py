"""The frozen image encoder during training, and an optional on-disk cache of its outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ..atomic import remove_stale, write_text
from .checkpoints import save_atomically


def normalise(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B,3,1024,1024]`` -> the encoder input (SAM's mean/std; already 1024 square)."""
    return (image.float() - model.pixel_mean) / model.pixel_std


class FeatureCache:
    """The frozen encoder outputs per training image, on disk (fp16, written atomically).

    A sub-folder named by a digest of everything the features depend on (the
    encoder checkpoint's sha256, the image list, the augmentation options and
    seed), so a changed input never reads stale features. Only valid with
    fixed per-image augmentation (see ``TrainSpec``).
    """

    def __init__(self, folder: str | Path, key: dict) -> None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.folder = Path(folder) / digest
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale(self.folder)  # what a killed run left
        key_file = self.folder / "key.json"
        if not key_file.exists():
            write_text(key_file, json.dumps(key, sort_keys=True, default=str, indent=1))
        self.hits = 0
        self.misses = 0

    def path(self, index: int) -> Path:
        return self.folder / f"{index:08d}.pt"

    def get(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return obj["image_embeddings"], obj["early_feature"]
        except Exception:  # noqa: BLE001 - a torn or foreign file: recompute it
            return None

    def put(self, index: int, image_embeddings: torch.Tensor, early_feature: torch.Tensor) -> None:
        obj = {"image_embeddings": image_embeddings.detach().to("cpu", torch.float16).clone(),
               "early_feature": early_feature.detach().to("cpu", torch.float16).clone()}
        save_atomically(obj, self.path(index))


@torch.no_grad()
def encode_frozen(
    model: nn.Module, image: torch.Tensor, indices: list[int], cache: FeatureCache | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen image encoder: uint8 ``[B,3,1024,1024]`` -> ``image_embeddings [B,256,64,64]`` and
    the early feature ``[B,C,64,64]``; from ``cache`` where it has them."""
    if cache is None:
        return model.image_encoder(normalise(model, image))
    found = [cache.get(i) for i in indices]
    missing = [k for k, f in enumerate(found) if f is None]
    if missing:
        emb, early = model.image_encoder(normalise(model, image[missing]))
        for j, k in enumerate(missing):
            cache.put(indices[k], emb[j], early[j])
            # what the cache holds (fp16), so that a run does not depend on whether the cache was warm
            found[k] = (emb[j].to(torch.float16), early[j].to(torch.float16))
    cache.hits += len(indices) - len(missing)
    cache.misses += len(missing)
    device_type = image.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else torch.float32
    return (torch.stack([f[0] for f in found]).to(image.device, dtype),
            torch.stack([f[1] for f in found]).to(image.device, dtype))
