"""Where the LPIPS backbones' ImageNet weights live: plain data and paths, no torch import.

``main.py weights status`` reads only this module, so it answers without loading torch. The
folder is torch's hub cache as ``torch.hub.get_dir()`` computes it (``$TORCH_HOME/hub``, else
``$XDG_CACHE_HOME/torch/hub``, else ``~/.cache/torch/hub``) plus ``checkpoints``; the URLs are
torchvision's ``IMAGENET1K_V1`` weights of AlexNet, VGG-16 and SqueezeNet 1.1
(``tests/engine/test_startup.py`` checks both against torch and torchvision).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.errors import AtlasError

LPIPS_NETS = ("alex", "vgg", "squeeze")

BACKBONE_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "squeeze": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


def hub_checkpoint_dir() -> Path:
    """``<torch hub dir>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), where torchvision keeps weights.

    Once torch is loaded its own ``torch.hub.get_dir()`` answers (it also honours ``set_dir``);
    before, the same rule is applied here so that ``weights status`` need not import torch.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir()) / "checkpoints"
    return hub_dir_from_environment() / "checkpoints"


def hub_dir_from_environment() -> Path:
    """torch's hub folder by torch's own rule from the environment, without importing torch."""
    torch_home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(torch_home)) / "hub"


@dataclass(frozen=True)
class Backbone:
    """The torchvision ImageNet weights file an LPIPS network needs."""

    net: str
    url: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def folder(self) -> Path:
        return hub_checkpoint_dir()

    @property
    def path(self) -> Path:
        return self.folder / self.filename

    @property
    def present(self) -> bool:
        return self.path.is_file()


def backbone(net: str) -> Backbone:
    """The weights file of LPIPS backbone ``net`` (``alex``, ``vgg`` or ``squeeze``)."""
    if net not in BACKBONE_URLS:
        raise AtlasError(f"unknown LPIPS network '{net}'; choose one of {', '.join(LPIPS_NETS)}")
    return Backbone(net, BACKBONE_URLS[net])


def backbone_status() -> list[tuple[Backbone, bool]]:
    """Each LPIPS backbone and whether its file is in the hub cache."""
    return [(backbone(n), backbone(n).present) for n in LPIPS_NETS]
