"""DCGAN generator (Radford et al.), in the layout of the PyTorch DCGAN tutorial.

``main`` is the tutorial's ``nn.Sequential``: ConvTranspose2d(nz -> 8 ngf, 4, 1, 0) then three
(ConvTranspose2d(4, 2, 1), BatchNorm2d, ReLU) blocks halving the width, and a final
ConvTranspose2d to 3 channels with tanh. State-dict keys are ``main.N.*``, so the tutorial's
checkpoints (and the digiface weights) load unchanged. BatchNorm always runs in eval mode.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import torch
from torch import nn

from engine.checkpoints.torchfile import (
    StateMismatch,
    check_model_size,
    is_tensor,
    load_into,
    open_torch_file,
    pickle_strings,
    show,
    state_tensor,
)
from engine.errors import CheckpointError, describe_exception
from engine.hashing import file_sha256
from engine.models.base import (
    EARLY_ACTIVATION,
    FIRST_LATENT_LAYER,
    PREFIX_STATE,
    SHARED_PREFIX,
    Condition,
    EditArg,
    Generator,
    LatentLayer,
    LayerInfo,
    SynthesisState,
    apply_conv_edit,
    conv_transpose_fn,
    edits_for,
    uniform_shift,
)
from engine.models.registry import CheckpointFormat, register_format, register_model


class DCGANGenerator(Generator):
    """``z [B, nz] -> image [B, nc, 64, 64]`` (for ``n_up = 4``)."""

    family = "dcgan"
    capabilities = frozenset({FIRST_LATENT_LAYER, EARLY_ACTIVATION, SHARED_PREFIX, PREFIX_STATE})

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
        edits, source = self.checked_edits(edit, x.shape[0])  # rows expand to the batch at the first edited layer
        return self._run(x, 0, edits, source)

    def synthesis_prefix(
        self, ws: torch.Tensor, layer: str, *, noise: str = "const", cond: Condition | None = None
    ) -> SynthesisState:
        """The input of ``main.i`` (``PREFIX_STATE``): ``main[:i]`` run on ``ws`` (here z)."""
        self.layer_info(layer)
        x = ws.reshape(ws.shape[0], self.z_dim, 1, 1)
        return SynthesisState(layer, (self.main[: int(layer.split(".")[1])](x),))

    def resume_synthesis(
        self,
        state: SynthesisState,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        edits = self.resume_edits(state, edit, ws.shape[0])
        return self._run(state.tensors[0], int(state.layer.split(".")[1]), edits, None)

    def _run(self, x: torch.Tensor, start: int, edits: list, source: torch.Tensor | None) -> torch.Tensor:
        """``main[start:]`` on ``x`` with the parameter edits (``source``: the shared-prefix form)."""
        for i in range(start, len(self.main)):
            m = self.main[i]
            mine = edits_for(edits, f"main.{i}") if edits else []
            if mine:
                conv = conv_transpose_fn(m.stride[0], m.padding[0])
                shift = uniform_shift(mine)
                if shift is not None:  # one shifted weight serves every sample
                    x = conv(x, m.weight + shift.to(m.weight.dtype))
                    x = x[source] if source is not None else x
                else:
                    x = apply_conv_edit(x, m(x), mine, conv, source)
                source = None
            else:
                x = m(x)
        return x


MAX_UPSAMPLINGS = 8  # 1024 px


def state_numel(nz: int, ngf: int, nc: int, n_up: int) -> int:
    """Number of values in the state dict of ``DCGANGenerator(nz, ngf, nc, n_up)``, without building it."""
    widths = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)]
    convs = nz * widths[0] + sum(a * b for a, b in zip(widths[:-1], widths[1:])) + widths[-1] * nc
    return 16 * convs + sum(4 * w + 1 for w in widths)


def load_dcgan_checkpoint(path: str | Path, *, name: str | None = None, key: str = "netG_state_dict") -> DCGANGenerator:
    """Load a DCGAN-tutorial generator state dict (``{key: state_dict}`` or a bare state dict).

    The architecture (nz, ngf, nc, number of up-samplings) comes from the shapes; it is checked
    against the file's size before the model is built.
    """
    path = Path(path)
    tf = open_torch_file(path, what="DCGAN checkpoint")
    ckpt, stats = tf.obj, tf.stats
    state = ckpt.get(key, ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise CheckpointError(f"{path}: no DCGAN generator weights (expected '{key}' with keys main.N.*)")
    for k, v in state.items():
        if not isinstance(k, str) or not is_tensor(v):
            raise CheckpointError(
                f"{path}: the DCGAN state dict holds {show(k)}: {type(v).__name__}; expected names of tensors"
            )
    convs = sorted(
        int(m.group(1)) for k, v in state.items() if (m := re.fullmatch(r"main\.(\d+)\.weight", k)) and v.dim() == 4
    )
    n_up = len(convs) - 1
    if not 1 <= n_up <= MAX_UPSAMPLINGS:
        raise CheckpointError(
            f"{path}: a DCGAN generator has 2 to {MAX_UPSAMPLINGS + 1} transposed convolutions, this one {len(convs)}"
        )
    w0 = state_tensor(state, "main.0.weight", 4, path)
    nz, ngf8 = int(w0.shape[0]), int(w0.shape[1])
    ngf = ngf8 // 2 ** (n_up - 1)
    nc = int(state_tensor(state, f"main.{convs[-1]}.weight", 4, path).shape[1])
    if min(nz, ngf, nc) < 1 or ngf * 2 ** (n_up - 1) != ngf8 or nc > 16:
        raise CheckpointError(
            f"{path}: main.0.weight {list(w0.shape)} and main.{convs[-1]}.weight describe no DCGAN "
            f"(latent {nz}, width {ngf8}, {nc} image channels, {n_up} up-samplings)"
        )
    check_model_size(state_numel(nz, ngf, nc, n_up), stats, path, f"{4 * 2**n_up}px DCGAN")
    gen = DCGANGenerator(nz=nz, ngf=ngf, nc=nc, n_up=n_up)
    try:
        load_into(gen, state)
    except StateMismatch as exc:
        raise CheckpointError(
            f"{path}: DCGAN weights do not fit the inferred architecture ({describe_exception(exc)})"
        ) from None
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
    strings = pickle_strings(path)  # key names of a torch file, read once, without loading its tensors
    return strings is not None and "main.0.weight" in strings


register_format(CheckpointFormat("dcgan-tutorial", (".pt", ".pth", ".tar"), _probe_dcgan, load_dcgan_checkpoint))
