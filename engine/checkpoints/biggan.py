"""pytorch-pretrained-biggan checkpoints (``config.json`` + ``pytorch_model.bin``) -> ``BigGANGenerator``.

``--model`` takes the folder or the ``.bin`` with ``config.json`` beside it (the layout
``BigGAN.from_pretrained(folder)`` reads). The files published in 2019 are torch's legacy
(pre-1.6) container; both containers are read by ``torchfile.open_torch_file`` (allow-listed
pickle, sizes checked against the file before anything is read). The model is built on the meta
device and takes the converted tensors (``assign=True``), each read from the file only when it is
converted: loading holds the model plus one tensor and one temporary. Nothing from the files is
ever executed. The configuration is checked field by field and the state dict must hold exactly
the keys and shapes that configuration implies (``BigGANConfig.state_shapes``), so a file that
declares huge shapes is refused before the model is built. ImageNet models (1000 classes) get
torchvision's class names (``BigGANGenerator.class_names``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from engine.checkpoints.torchfile import TensorRef, all_finite, is_tensor, open_torch_file, read_tensor, short_reason
from engine.errors import AtlasError, CheckpointError
from engine.hashing import file_sha256
from engine.models.biggan import BigGANConfig, BigGANGenerator
from engine.models.registry import CheckpointFormat, register_format

FORMAT = "pytorch-pretrained-biggan"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
MAX_CONFIG_BYTES = 1 << 20


def resolve_files(path: str | Path) -> tuple[Path, Path]:
    """``(config.json, weights)`` for a model folder or a ``.bin`` file; missing files are a ``CheckpointError``."""
    path = Path(path)
    if path.is_dir():
        config, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    else:
        config, weights = path.with_name(CONFIG_NAME), path
    for f in (config, weights):
        if not f.is_file():
            raise CheckpointError(
                f"{f}: missing; a pytorch-pretrained-biggan model is a folder with {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
    return config, weights


def read_config(path: Path) -> BigGANConfig:
    """The checked configuration of ``config.json``; one-line ``CheckpointError`` naming the file otherwise."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes is far too large for a BigGAN config.json")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({short_reason(exc)})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({short_reason(exc)})") from None
    try:
        return BigGANConfig.from_json(data, str(path))
    except CheckpointError:
        raise
    except AtlasError as exc:
        raise CheckpointError(str(exc)) from None


def read_weights(path: Path) -> dict[str, TensorRef]:
    """The state dict of ``pytorch_model.bin`` (legacy or zip container), its tensors declared, not read."""
    sd = open_torch_file(path, what="pytorch-pretrained-biggan weights file").obj
    if not isinstance(sd, dict) or not all(isinstance(k, str) and is_tensor(v) for k, v in sd.items()):
        raise CheckpointError(f"{path}: holds {type(sd).__name__}, not a state dict of named tensors")
    return sd


def check_state(sd: dict[str, TensorRef], cfg: BigGANConfig, path: Path) -> None:
    """The keys, shapes and dtypes ``cfg`` implies, exactly (names the first difference)."""
    want = cfg.state_shapes()
    missing = [k for k in want if k not in sd]
    extra = [k for k in sd if k not in want]
    if missing or extra:
        what = f"lacks {', '.join(missing[:3])}" if missing else f"has unexpected {', '.join(extra[:3])}"
        more = len(missing) + len(extra) - 3
        raise CheckpointError(
            f"{path}: does not fit its {CONFIG_NAME} ({what}{f' and {more} more' if more > 0 else ''})"
        )
    for k, shape in want.items():
        t = sd[k]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{path}: {k} has shape {list(t.shape)}; {CONFIG_NAME} implies {list(shape)}")
        if not t.is_floating_point():
            raise CheckpointError(f"{path}: {k} holds {t.dtype}, not floating-point weights")


def _sn_weight(sd: dict[str, TensorRef], prefix: str, path: Path, sigmas: dict[str, float]) -> torch.Tensor:
    """``weight_orig / sigma``, ``sigma = u . (W v)`` with the stored vectors: the reference's eval-mode weight."""
    w = read_tensor(sd.pop(f"{prefix}.weight_orig")).float()
    u, v = (read_tensor(sd.pop(f"{prefix}.weight_{x}")).float() for x in ("u", "v"))
    sigma = torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v))
    if not torch.isfinite(sigma) or float(sigma) == 0.0:
        raise CheckpointError(
            f"{path}: the spectral-norm vectors of {prefix} give sigma = {float(sigma)}; damaged file"
        )
    sigmas[prefix] = float(sigma)
    return w / sigma


def _finite(t: torch.Tensor, key: str, path: Path) -> torch.Tensor:
    if not all_finite(t):
        raise CheckpointError(f"{path}: non-finite values in the weights ({key}); damaged file")
    return t


def convert_state(sd: dict[str, TensorRef], cfg: BigGANConfig, path: Path) -> tuple[dict, dict[str, float]]:
    """Our state dict (effective weights) from the reference's, and each SN module's sigma.

    Consumes ``sd``: each tensor is read from the file (a fresh float32 tensor of ours) only when
    it is converted, so the converted weights and one tensor are all that is ever in memory.
    """
    sig: dict[str, float] = {}

    def own(key: str) -> torch.Tensor:
        t = sd.pop(key)
        return _finite(t.read().float() if isinstance(t, TensorRef) else t.float().clone(), key, path)

    def sn(prefix: str) -> torch.Tensor:
        return _finite(_sn_weight(sd, prefix, path, sig), prefix, path)

    out = {
        "embeddings": own("embeddings.weight"),
        "gen_z_weight": sn("generator.gen_z"),
        "gen_z_bias": own("generator.gen_z.bias"),
        "bn_weight": own("generator.bn.weight"),
        "bn_bias": own("generator.bn.bias"),
        "bn_means": own("generator.bn.running_means"),
        "bn_vars": own("generator.bn.running_vars"),
        "conv_to_rgb.weight": sn("generator.conv_to_rgb"),
        "conv_to_rgb.bias": own("generator.conv_to_rgb.bias"),
    }
    for i, (kind, _) in enumerate(cfg.module_layout()):
        src, dst = f"generator.layers.{i}", f"layers.{i}"
        if kind == "attn":
            out[f"{dst}.gamma"] = own(f"{src}.gamma")
            for ours, theirs in (("theta", "theta"), ("phi", "phi"), ("g", "g"), ("o", "o_conv")):
                out[f"{dst}.{ours}"] = sn(f"{src}.snconv1x1_{theirs}")
            continue
        for j in range(4):
            out[f"{dst}.bn_{j}.running_means"] = own(f"{src}.bn_{j}.running_means")
            out[f"{dst}.bn_{j}.running_vars"] = own(f"{src}.bn_{j}.running_vars")
            out[f"{dst}.bn_{j}.scale"] = sn(f"{src}.bn_{j}.scale")
            out[f"{dst}.bn_{j}.offset"] = sn(f"{src}.bn_{j}.offset")
            out[f"{dst}.conv_{j}.weight"] = sn(f"{src}.conv_{j}")
            out[f"{dst}.conv_{j}.bias"] = own(f"{src}.conv_{j}.bias")
    return out, sig


def load_biggan(path: str | Path) -> BigGANGenerator:
    """A ``BigGANGenerator`` (eval mode, CPU) from a model folder or its ``pytorch_model.bin``."""
    config_path, weights_path = resolve_files(path)
    cfg = read_config(config_path)
    sd = read_weights(weights_path)
    check_state(sd, cfg, weights_path)
    with torch.no_grad():
        ours, sigmas = convert_state(sd, cfg, weights_path)
        del sd
        folder = weights_path.parent
        with torch.device("meta"):  # no second copy: the model takes the converted tensors
            gen = BigGANGenerator(cfg, name=folder.name if weights_path.name == WEIGHTS_NAME else weights_path.stem)
        gen.load_state_dict(ours, strict=True, assign=True)
    gen.sn_sigma = sigmas
    ident = hashlib.sha256()
    for f in (config_path, weights_path):
        ident.update(file_sha256(f).encode())
    gen.identity = ident.hexdigest()
    gen.source = str(path)
    return gen.eval()


def probe_biggan(path: Path) -> bool:
    """A folder with either file, or a ``.bin`` with ``config.json`` beside it (the loader then checks them
    and names a missing one)."""
    try:
        if path.is_dir():
            return (path / CONFIG_NAME).is_file() or (path / WEIGHTS_NAME).is_file()
        return path.is_file() and path.with_name(CONFIG_NAME).is_file()
    except OSError:
        return False


register_format(CheckpointFormat(FORMAT, (".bin",), probe_biggan, load_biggan, folders=True))
