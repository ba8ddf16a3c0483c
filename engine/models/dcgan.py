"""DCGAN generator (Radford et al.), in the layout of the PyTorch DCGAN tutorial.

``main`` is the tutorial's ``nn.Sequential``: ConvTranspose2d(nz -> 8 ngf, 4, 1, 0) then three
(ConvTranspose2d(4, 2, 1), BatchNorm2d, ReLU) blocks halving the width, and a final
ConvTranspose2d to 3 channels with tanh. State-dict keys are ``main.N.*``, so the tutorial's
checkpoints (and the digiface weights) load unchanged. BatchNorm always runs in eval mode.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import torch
from torch import nn

from engine.errors import CheckpointError
from engine.hashing import file_sha256
from engine.models.base import (
    EARLY_ACTIVATION,
    FIRST_LATENT_LAYER,
    SHARED_PREFIX,
    Condition,
    EditArg,
    Generator,
    LatentLayer,
    LayerInfo,
    apply_conv_edit,
    as_edit_list,
    conv_transpose_fn,
    edits_for,
    shared_source,
)
from engine.models.registry import CheckpointFormat, register_format, register_model


class DCGANGenerator(Generator):
    """``z [B, nz] -> image [B, nc, 64, 64]`` (for ``n_up = 4``)."""

    family = "dcgan"
    capabilities = frozenset({FIRST_LATENT_LAYER, EARLY_ACTIVATION, SHARED_PREFIX})

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, n_up: int = 4) -> None:
        super().__init__()
        self.z_dim = nz
        self.img_channels = nc
        self.resolution = 4 * 2**n_up
        widths = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)]  # 512, 256, 128, 64
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        ]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(widths[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        # the mid-resolution conv (16x16 output for 64x64 images): visible, global-but-not-total edits
        convs = [i for i, m in enumerate(self.main) if isinstance(m, nn.ConvTranspose2d)]
        self.default_edit_layer = f"main.{convs[len(convs) // 2]}"

    def train(self, mode: bool = True) -> DCGANGenerator:
        # A generator in this program is always evaluated with its running BatchNorm statistics.
        return super().train(False)

    def editable_layers(self) -> list[LayerInfo]:
        out, res = [], 1
        for i, m in enumerate(self.main):
            if isinstance(m, nn.ConvTranspose2d):
                res = 4 if res == 1 else res * 2
                out.append(LayerInfo(f"main.{i}", "conv_transpose", tuple(m.weight.shape), res))
        return out

    def layer_weight(self, name: str) -> torch.Tensor:
        self.layer_info(name)
        return self.main[int(name.split(".")[1])].weight

    def first_latent_layer(self) -> LatentLayer:
        """z -> first ConvTranspose (1x1 -> 4x4) with the eval BatchNorm's scale folded in: ``[C * 4 * 4, nz]``.

        SeFa's default here leaves rows unnormalised, so the folded BatchNorm scale counts.
        """
        conv, bn = self.main[0], self.main[1]
        W = conv.weight.detach().double()  # [nz, C, 4, 4]: out[c, i, j] = sum_n z_n W[n, c, i, j]
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)  # [C]
        A = W * scale.view(1, -1, 1, 1)
        return LatentLayer("main.0", A.permute(1, 2, 3, 0).reshape(-1, W.shape[0]), normalize_rows=False)

    @property
    def activation_depths(self) -> tuple[int, int]:
        """Depth N = the activation after ``main[:N]``; 3 is after the first ConvTranspose-BN-ReLU block."""
        return (1, len(self.main) - 1)

    @property
    def default_activation_depth(self) -> int:
        return 3

    def activation_name(self, depth: int) -> str:
        return f"activation after main[:{depth}]"

    def early_activation(self, z: torch.Tensor, depth: int, *, classes=None) -> torch.Tensor:
        """Activation after ``main[:depth]`` (GANSpace takes an early one)."""
        return self.main[:depth](z.reshape(z.shape[0], self.z_dim, 1, 1))

    def synthesis(
        self,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        noise_generator: torch.Generator | None = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        x = ws.reshape(ws.shape[0], self.z_dim, 1, 1)
        edits = as_edit_list(edit)
        for e in edits:
            self.layer_info(e.layer)
        source = shared_source(edits)  # rows expand to the full batch at the first edited layer
        for i, m in enumerate(self.main):
            mine = edits_for(edits, f"main.{i}") if edits else []
            if mine:
                x = apply_conv_edit(x, m(x), mine, conv_transpose_fn(m.stride[0], m.padding[0]), source)
                source = None
            else:
                x = m(x)
        return x


def load_dcgan_checkpoint(path: str | Path, *, name: str | None = None, key: str = "netG_state_dict") -> DCGANGenerator:
    """Load a DCGAN-tutorial generator state dict (``{key: state_dict}`` or a bare state dict)."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the file's fault
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc.__class__.__name__}: {exc})") from None
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise CheckpointError(f"{path}: no DCGAN generator weights (expected '{key}' with keys main.N.*)")
    w0 = state["main.0.weight"]
    convs = sorted(int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].dim() == 4)
    nz, ngf8 = w0.shape[0], w0.shape[1]
    n_up = len(convs) - 1
    nc = state[f"main.{convs[-1]}.weight"].shape[1]
    gen = DCGANGenerator(nz=nz, ngf=ngf8 // 2 ** (n_up - 1), nc=nc, n_up=n_up)
    try:
        gen.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: DCGAN weights do not fit the inferred architecture: {exc}") from None
    gen.name = name or path.stem
    gen.identity = file_sha256(path)
    gen.source = str(path)
    return gen.eval()


DIGIFACE_HINT = (
    "the built-in model digiface-dcgan-64 needs the weights in the 'gan-face-generate' wheel; "
    "install them with: pip install --no-deps gan-face-generate"
)


def digiface_weights_path() -> Path:
    try:
        root = importlib.resources.files("gan_face_generate")
    except ModuleNotFoundError:
        raise CheckpointError(DIGIFACE_HINT) from None
    path = Path(str(root / "weights.tar"))
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; " + DIGIFACE_HINT)
    return path


@register_model(
    "digiface-dcgan-64", description="64x64 faces, DCGAN (latent 100, 3.6M params), from the gan-face-generate wheel"
)
def digiface_dcgan_64() -> DCGANGenerator:
    return load_dcgan_checkpoint(digiface_weights_path(), name="digiface-dcgan-64")


def _probe_dcgan(path: Path) -> bool:
    from engine.checkpoints.torchfile import pickle_strings

    strings = pickle_strings(path)  # key names of a torch zip, without loading its tensors
    if strings is not None:
        return "main.0.weight" in strings
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except Exception:  # noqa: BLE001
        return False
    state = ckpt.get("netG_state_dict", ckpt) if isinstance(ckpt, dict) else None
    return isinstance(state, dict) and "main.0.weight" in state


register_format(CheckpointFormat("dcgan-tutorial", (".pt", ".pth", ".tar"), _probe_dcgan, load_dcgan_checkpoint))
