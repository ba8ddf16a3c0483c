"""Image distances for the parameter-space spectrum method (and analyses of edit strength).

Every distance here is a *squared* distance that is a weighted sum of squared feature
differences::

    d2(x, y) = sum_l sum_{c,h,w} omega_l[c] * (psi_l(x) - psi_l(y))[c, h, w] ** 2

* ``lpips-alex`` (default), ``lpips-vgg``, ``lpips-squeeze``: LPIPS v0.1 (Zhang et al. 2018)
  through the ``lpips`` package. ``psi_l`` are the backbone's unit-normalised activations,
  ``omega_l`` the package's learned non-negative 1x1 weights divided by ``H_l * W_l`` (LPIPS
  averages over positions). This is exactly the value ``lpips.LPIPS()(x, y)`` returns: LPIPS is
  itself a squared distance, so "``d^2``" of the paper is that value, not its square (squaring it
  again would make the Hessian at ``a = 0`` identically zero).
* ``pixel``: the mean squared pixel difference. It is **not** a perceptual distance; results made
  with it say so in their parameters (``distance_label``). It needs no weights.

Exposing ``psi`` and ``omega`` lets the Hessian of ``E_z d2(G(z), G'(z))`` at ``G' = G`` be
computed exactly as the Gauss-Newton product ``2 J^T Omega J`` (``engine.discovery.hessian``).

Weights: the LPIPS linear layers ship inside the ``lpips`` package. Its ImageNet backbones come
from torchvision's files in the torch hub cache (``<torch hub dir>/checkpoints``); this module
never downloads them by itself. ``download_backbone`` (``python main.py weights download``)
fetches them for users who are online; without the file, ``load_distance`` raises an
``AtlasError`` naming the file, the folder and the alternatives.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.backbones import LPIPS_NETS, Backbone, backbone, backbone_status, hub_checkpoint_dir
from engine.checkpoints.torchfile import read_torch_file
from engine.errors import AtlasError, describe_exception

DISTANCES = ("lpips-alex", "lpips-vgg", "lpips-squeeze", "pixel")
DEFAULT_DISTANCE = "lpips-alex"

PIXEL_LABEL = "pixel: mean squared pixel difference (NOT perceptual; LPIPS backbone weights were not used)"


def missing_backbone_message(b: Backbone, why: str = "") -> str:
    why = f" ({why})" if why else ""
    return (
        f"LPIPS ({b.net}) needs the ImageNet backbone file {b.filename} in the folder {b.folder}, "
        f"and it is not there{why}. While online run `python main.py weights download --net {b.net}`, "
        f"or copy the file from {b.url} into that folder; or choose the distance 'pixel' "
        f"(mean squared pixel difference, not perceptual): `main.py discover ... --set distance=pixel`."
    )


def download_backbone(net: str, *, progress: bool = True) -> Path:
    """Fetch the backbone file of ``net`` into the hub cache (an explicit, user-requested download).

    Returns the file's path. Raises ``AtlasError`` naming the file, folder and URL if it fails.
    """
    b = backbone(net)
    if b.present:
        return b.path
    b.folder.mkdir(parents=True, exist_ok=True)
    tmp = b.path.with_name(b.filename + ".partial")
    try:
        torch.hub.download_url_to_file(b.url, str(tmp), hash_prefix=_hash_prefix(b.filename), progress=progress)
        os.replace(tmp, b.path)
    except (OSError, urllib.error.URLError, RuntimeError) as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise AtlasError(
            missing_backbone_message(b, f"download from {b.url} failed: {describe_exception(exc)}")
        ) from None
    return b.path


def _hash_prefix(filename: str) -> str | None:
    """torchvision names files ``name-<sha256 prefix>.pth``; the prefix checks the download."""
    stem = filename.rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    return tail if len(tail) >= 8 and all(c in "0123456789abcdef" for c in tail) else None


class Distance(nn.Module):
    """A squared image distance ``d2(x, y) -> [B]`` exposing its feature map and weights.

    Inputs are images ``[B, C, H, W]`` nominally in ``[-1, 1]``. ``features_weights(x)`` returns
    ``psi_l(x)`` and the matching ``omega_l`` (broadcastable to each feature), so that
    ``d2(x, y) = sum_l sum omega_l * (psi_l(x) - psi_l(y))**2``. Subclasses set ``name`` and
    ``label`` (a description honest about what the distance is).
    """

    name: str = ""
    label: str = ""
    perceptual: bool = False
    reason: str = ""  # why this distance stands in for the one asked for ("" when it does not)

    def __init__(self, size: int | None = None) -> None:
        super().__init__()
        self.size = size

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images larger than ``size`` are area-downsampled to ``size`` (linear, so exact to differentiate)."""
        if self.size and x.shape[-1] > self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="area")
        return x

    def features_weights(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, ws = self.features_weights(x)
        fy, _ = self.features_weights(y)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for a, b, w in zip(fx, fy, ws):
            total = total + (w * (a - b) ** 2).flatten(1).sum(1)
        return total

    @property
    def title(self) -> str:
        """The distance's name as reports show it (a fit's ``distance_name``)."""
        return self.name

    def describe(self) -> dict:
        """What a direction set records about the distance it was made with."""
        return {"distance": self.name, "distance_label": self.label, "distance_size": self.size}


class PixelDistance(Distance):
    """``d2 = mean_{c,h,w} (x - y)^2``: a pixel-space stand-in for LPIPS, labelled as such.

    ``reason`` (``engine.projection.resolve_distance``): why LPIPS, asked for, was not used (its
    backbone file is missing); the title then says "LPIPS unavailable" wherever a figure is shown.
    """

    name = "pixel"
    label = PIXEL_LABEL
    perceptual = False

    def __init__(self, size: int | None = None, *, reason: str = "") -> None:
        super().__init__(size)
        self.reason = reason

    @property
    def title(self) -> str:
        return "pixel MSE" + (" (LPIPS unavailable)" if self.reason else "")

    def features_weights(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        f = self.prepare(x)
        return [f], [torch.tensor(1.0 / f[0].numel(), dtype=f.dtype, device=f.device)]


class LpipsDistance(Distance):
    """LPIPS v0.1 with backbone ``net``; equals ``lpips.LPIPS(net=net)(x, y)`` flattened to ``[B]``."""

    perceptual = True

    def __init__(self, net: str = "alex", *, size: int | None = 64, pnet_rand: bool = False) -> None:
        """``pnet_rand=True`` keeps the backbone random (tests only: no weights file is read)."""
        super().__init__(size)
        import lpips

        b = backbone(net)
        if not pnet_rand and not b.present:
            raise AtlasError(missing_backbone_message(b))
        self.net_name = net
        self.name = f"lpips-{net}"
        self.label = f"LPIPS v0.1 ({net})" + (" with a RANDOM backbone (testing only)" if pnet_rand else "")
        # The package is always built with pnet_rand so that it never fetches a backbone itself;
        # the real backbone is read from the hub cache below (weights only, no code).
        self.model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False).eval()
        if not pnet_rand:
            _load_backbone(self.model.net, b)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def features_weights(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``psi_l(x)`` (unit-normalised over channels) and ``omega_l = lin_l / (H_l W_l)`` ``[1, C_l, 1, 1]``."""
        x = self.model.scaling_layer(self.prepare(x))
        feats, ws = [], []
        for f, lin in zip(self.model.net(x), self.model.lins):
            # vector_norm: the value of lpips.normalize_tensor, with a finite derivative at 0
            feats.append(f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + 1e-10))
            ws.append(lin.model[-1].weight.reshape(1, -1, 1, 1).to(f.dtype) / (f.shape[2] * f.shape[3]))
        return feats, ws


def _load_backbone(net: nn.Module, b: Backbone) -> None:
    """Copy torchvision's ``features.N.*`` weights into lpips' slices (whose children are named N)."""
    try:
        state = read_torch_file(b.path, what=f"torchvision {b.net} weights file")  # weights only, no code run
    except AtlasError as exc:  # a damaged file is the user's to replace
        raise AtlasError(
            f"{b.path}: cannot read the LPIPS backbone file ({str(exc).removeprefix(f'{b.path}: ')}); "
            f"delete it and run `python main.py weights download --net {b.net}`"
        ) from None
    if not isinstance(state, dict):
        raise AtlasError(f"{b.path}: not the torchvision {b.net} ImageNet weights (it holds a {type(state).__name__})")
    loaded = 0
    with torch.no_grad():
        for slice_ in net.children():
            for idx, module in slice_.named_children():
                for pname, p in module.named_parameters():
                    key = f"features.{idx}.{pname}"
                    if key not in state or state[key].shape != p.shape:
                        raise AtlasError(
                            f"{b.path}: not the torchvision {b.net} ImageNet weights (no '{key}' "
                            f"of shape {tuple(p.shape)})"
                        )
                    p.copy_(state[key])
                    loaded += 1
    if loaded == 0:
        raise AtlasError(f"{b.path}: no backbone weights were loaded")


def load_distance(
    name: str = DEFAULT_DISTANCE, *, device: torch.device | str = "cpu", size: int | None = 64, pnet_rand: bool = False
) -> Distance:
    """The squared distance ``name`` (one of ``DISTANCES``) on ``device``, in eval mode, frozen.

    ``size``: images larger than this are area-downsampled first (the reference implementation
    compares 64 x 64 images). Raises ``AtlasError`` if an LPIPS backbone file is missing.
    """
    if name == "pixel":
        d: Distance = PixelDistance(size)
    elif name.startswith("lpips-") and name[6:] in LPIPS_NETS:
        d = LpipsDistance(name[6:], size=size, pnet_rand=pnet_rand)
    elif name == "lpips":
        d = LpipsDistance("alex", size=size, pnet_rand=pnet_rand)
    else:
        raise AtlasError(f"unknown distance '{name}'; choose one of {', '.join(DISTANCES)}")
    return d.to(device).eval()


__all__ = [
    "DEFAULT_DISTANCE",
    "DISTANCES",
    "LPIPS_NETS",
    "Backbone",
    "Distance",
    "backbone",
    "backbone_status",
    "download_backbone",
    "hub_checkpoint_dir",
    "load_distance",
    "missing_backbone_message",
]
