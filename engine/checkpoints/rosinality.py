"""rosinality/stylegan2-pytorch ``.pt`` checkpoints -> ``StyleGAN2Generator``.

Two layouts are read by ``torchfile.open_torch_file`` (no code run; ``argparse.Namespace``
allow-listed for train.py's ``args``):

* convert_weight.py: ``{"g_ema": state_dict, "latent_avg": [style_dim]}``;
* train.py: ``{"g", "d", "g_optim", "d_optim", "args", ...}`` without ``latent_avg``.

Only ``g_ema`` (the exponential moving average of the generator, what the reference samples from)
is read, one tensor at a time into the model (``load_into``); ``g``, ``d`` and the optimiser
states never are. Size, style_dim, n_mlp, widths (hence channel_multiplier) and image
channels come from the tensor shapes; nothing has to be passed by the user. The mapping
network's lr multiplier is not stored in the file; the reference default 0.01 is assumed (it is
the only value train.py can produce). Without ``latent_avg`` the truncation centre is the mean
of ``mapping(z)`` over ``MEAN_SAMPLES`` latents from a fixed seed, and ``describe()`` says so.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from engine.checkpoints.torchfile import (
    StateMismatch,
    check_model_size,
    head_contains,
    load_into,
    open_torch_file,
    pickle_strings,
    read_tensor,
    short_reason,
    state_tensor,
)
from engine.errors import AtlasError, CheckpointError
from engine.hashing import file_sha256
from engine.models.registry import CheckpointFormat, register_format
from engine.models.stylegan2 import MAX_RESOLUTION, StyleGAN2Config, StyleGAN2Generator, fir_filter

FORMAT = "rosinality-stylegan2"
MEAN_SAMPLES = 10000
MEAN_SEED = 0


def infer_config(sd: dict, path: Path) -> StyleGAN2Config:
    """The configuration of a rosinality ``g_ema`` state dict, from its key names and shapes.

    Every tensor the conversion reads is checked for its type and number of dimensions first.
    """
    need = ("style.1.weight", "input.input", "conv1.conv.weight", "to_rgb1.conv.weight")
    missing = [k for k in need if k not in sd]
    if missing:
        raise CheckpointError(f"{path}: g_ema is not a rosinality StyleGAN2 generator (missing {', '.join(missing)})")
    bad = next((k for k in sd if not isinstance(k, str)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: g_ema has a key of type {type(bad).__name__}; a state dict's keys are names")
    for k in sd:
        want = _NDIM.get(".".join(k.split(".")[-2:]))
        if want is None:
            want = next((n for pattern, n in _NDIM_PATTERNS if pattern.fullmatch(k)), None)
        if want is not None:
            state_tensor(sd, k, want, path, "g_ema.")
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    style_dim = int(sd["style.1.weight"].shape[1])
    n_rgbs = len({m.group(1) for k in sd if (m := re.match(r"to_rgbs\.(\d+)\.", k))})
    if n_rgbs > MAX_RESOLUTION.bit_length() - 3:
        raise CheckpointError(f"{path}: g_ema has {n_rgbs} to_rgbs layers: over {MAX_RESOLUTION}px, refused")
    resolution = 2 ** (2 + n_rgbs)
    channels = {4: int(sd["input.input"].shape[1])}
    for j in range(n_rgbs):
        key = f"convs.{2 * j}.conv.weight"
        if key not in sd:
            raise CheckpointError(f"{path}: g_ema has to_rgbs.{j} but no {key}")
        channels[2 ** (j + 3)] = int(sd[key].shape[1])
    try:
        return StyleGAN2Config(
            resolution=resolution,
            channels=channels,
            z_dim=style_dim,
            w_dim=style_dim,
            mapping_layers=n_mlp,
            mapping_lr_mul=0.01,
            architecture="skip",
            img_channels=int(sd["to_rgb1.conv.weight"].shape[1]),
            use_noise="conv1.noise.weight" in sd,
        )
    except AtlasError as exc:
        raise CheckpointError(f"{path}: g_ema's shapes describe no valid generator ({exc})") from None


# dimensions of the tensors the conversion reads, by the last two parts of their names
_NDIM = {
    "conv.weight": 5,
    "modulation.weight": 2,
    "modulation.bias": 1,
    "noise.weight": 1,
    "activate.bias": 1,
    "blur.kernel": 2,
    "upsample.kernel": 2,
    "input.input": 4,
}
_NDIM_PATTERNS = (
    (re.compile(r"style\.\d+\.weight"), 2),
    (re.compile(r"style\.\d+\.bias"), 1),
    (re.compile(r"to_rgbs?\d*(\.\d+)?\.bias"), 4),
    (re.compile(r"noises\.noise_\d+"), 4),
)


def convert_state_dict(sd: dict, cfg: StyleGAN2Config) -> dict:
    """Rename (and reshape) a rosinality ``g_ema`` state dict to ``StyleGAN2Generator``'s keys
    (tensors or ``TensorRef``s: views of declared tensors are declared too)."""
    out: dict = {}
    for i in range(cfg.mapping_layers):
        out[f"mapping_net.fcs.{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping_net.fcs.{i}.bias"] = sd[f"style.{i + 1}.bias"]
    out["synthesis_net.b4.const"] = sd["input.input"][0]

    def conv(src: str, dst: str, noise_index: int) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        if cfg.use_noise:
            out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape([])
            out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_index}"][0, 0]

    def torgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)

    conv("conv1", "synthesis_net.b4.conv1", 0)
    torgb("to_rgb1", "synthesis_net.b4.torgb")
    for j, r in enumerate(cfg.block_resolutions[1:]):
        conv(f"convs.{2 * j}", f"synthesis_net.b{r}.conv0", 2 * j + 1)
        conv(f"convs.{2 * j + 1}", f"synthesis_net.b{r}.conv1", 2 * j + 2)
        torgb(f"to_rgbs.{j}", f"synthesis_net.b{r}.torgb")
    return out


def _check_filters(sd: dict, path: Path) -> None:
    # The reference stores its FIR kernels as buffers; we build [1,3,3,1] ourselves, so refuse
    # a file whose filters differ rather than render it wrongly.
    want = fir_filter() * 4
    for k, v in sd.items():
        if k.endswith(".blur.kernel") or k.endswith(".upsample.kernel"):
            v = read_tensor(v)
            if v.shape != want.shape or not torch.allclose(v.float(), want, atol=1e-6, equal_nan=False):
                raise CheckpointError(f"{path}: {k} is not the [1,3,3,1] filter this loader supports")


def load_rosinality(path: str | Path) -> StyleGAN2Generator:
    """A ``StyleGAN2Generator`` (eval mode, CPU) from a rosinality ``.pt`` file's ``g_ema``."""
    path = Path(path)
    tf = open_torch_file(path, what="rosinality StyleGAN2 checkpoint", namespaces=True)
    ckpt, stats = tf.obj, tf.stats
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        keys = ", ".join(str(k)[:40] for k in list(ckpt)[:8]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: no 'g_ema' generator in this rosinality checkpoint (found {keys})")
    sd = ckpt["g_ema"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'g_ema' is a {type(sd).__name__}, not a state dict")
    cfg = infer_config(sd, path)
    check_model_size(cfg.state_numel(), stats, path, f"{cfg.resolution}px generator")
    _check_filters(sd, path)
    size = _args_size(ckpt.get("args"), path)
    if size is not None and size != cfg.resolution:
        raise CheckpointError(f"{path}: args.size is {size} but g_ema's weights are for {cfg.resolution}px")
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = read_tensor(state_tensor(ckpt, "latent_avg", (1, 2), path))
        if latent_avg.numel() != cfg.w_dim or not torch.isfinite(latent_avg).all():
            raise CheckpointError(
                f"{path}: latent_avg of shape {list(latent_avg.shape)} is not {cfg.w_dim} finite numbers"
            )
    try:
        state = convert_state_dict(sd, cfg)
    except KeyError as exc:
        raise CheckpointError(
            f"{path}: g_ema lacks {exc.args[0]} (expected for a {cfg.resolution}px generator)"
        ) from None
    except (IndexError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: g_ema has a tensor of the wrong shape ({short_reason(exc)})") from None
    if latent_avg is not None:
        state["w_avg"] = latent_avg.reshape(-1)
    gen = stylegan2_from_state(cfg, state, path, source="g_ema", w_avg_name="latent_avg")
    args = ckpt.get("args")
    gen.format = FORMAT + (" (train.py layout)" if "g" in ckpt or args is not None else " (convert_weight.py layout)")
    gen.identity = file_sha256(path)
    gen.source = str(path)
    return gen


def _args_size(args: object, path: Path) -> int | None:
    """``args.size`` of a train.py checkpoint (an ``argparse.Namespace``), checked to be an integer."""
    if not isinstance(args, argparse.Namespace):
        return None
    size = getattr(args, "size", None)
    if size is not None and type(size) is not int:
        raise CheckpointError(f"{path}: args.size is {str(size)[:40]!r} ({type(size).__name__}), not an integer")
    return size


def stylegan2_from_state(
    cfg: StyleGAN2Config, state: dict, path: Path, *, source: str, w_avg_name: str
) -> StyleGAN2Generator:
    """A ``StyleGAN2Generator`` of ``cfg`` (eval mode, CPU) filled with ``state`` (tensors or
    ``TensorRef``s, read one at a time: ``load_into``). Without ``state["w_avg"]`` the truncation
    centre is computed (``truncation_centre``; ``w_avg_name`` is what the file would call it)."""
    gen = StyleGAN2Generator(cfg, name=path.stem)
    stored = "w_avg" in state
    if not stored:
        state["w_avg"] = torch.zeros(cfg.w_dim)
    try:
        load_into(gen, state)
    except StateMismatch as exc:
        raise CheckpointError(
            f"{path}: {source} does not fit the inferred {cfg.resolution}px {cfg.architecture} architecture ({exc})"
        ) from None
    gen.eval()
    truncation_centre(gen, w_avg_name, stored=stored)
    return gen


def truncation_centre(gen: StyleGAN2Generator, name: str, *, stored: bool) -> None:
    """Say where ``gen.w_avg`` comes from: the checkpoint's ``name``, or (``stored=False``) the mean of
    ``mapping(z)`` over ``MEAN_SAMPLES`` z from seed ``MEAN_SEED``, computed here."""
    if stored:
        gen.w_avg_source = f"{name} stored in the checkpoint"
        return
    with torch.no_grad():
        gen.w_avg.copy_(mean_w(gen, MEAN_SAMPLES, MEAN_SEED))
    gen.w_avg_source = (
        f"computed: mean of mapping(z) over {MEAN_SAMPLES} z (seed {MEAN_SEED}); the checkpoint has no {name}"
    )


@torch.no_grad()
def mean_w(gen: StyleGAN2Generator, n: int, seed: int, chunk: int = 2000) -> torch.Tensor:
    """``[w_dim]`` the mean of ``mapping(z)`` over ``n`` standard normal z drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(gen.w_dim, dtype=torch.float64)
    for start in range(0, n, chunk):
        z = torch.randn(min(chunk, n - start), gen.z_dim, generator=g)
        total += gen.mapping_net(z.to(gen.device)).double().sum(dim=0).cpu()
    return (total / n).float()


def probe_rosinality(path: Path) -> bool:
    """True for a torch file holding a rosinality ``g_ema`` (reads key names once; loads nothing)."""
    strings = pickle_strings(path)
    if strings is not None:
        return "g_ema" in strings and "style.1.weight" in strings and "input.input" in strings
    # a damaged archive of ours (its directory lost): let the loader say what is wrong with it
    return head_contains(path, (b"PK\x03\x04", b"data.pkl", b"g_ema", b"style.1.weight"))


register_format(CheckpointFormat(FORMAT, (".pt", ".pth"), probe_rosinality, load_rosinality))
