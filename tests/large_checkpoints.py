"""Synthetic checkpoints of real sizes in every format, and a child process that measures a load's peak.

For ``bench/bench_load_memory.py`` and the memory tests: ``write(fmt, folder, scale)`` writes one
checkpoint of format ``fmt`` (``FORMATS``) whose generator holds tens of megabytes of float32
(``scale`` multiplies the widths; the tests use a smaller scale than the bench) and returns the
path ``load_generator`` takes. The files carry what the real ones carry besides the generator: a
discriminator in DCGAN-tutorial, rosinality train.py and NVIDIA files, NVIDIA's ``G`` beside
``G_ema``. ``measure(path, warmup)`` loads it in a fresh process (after a small file of the same
format) and returns the peak growth of resident memory during the load and the loaded
generator's tensor bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

FORMATS = (
    "dcgan",
    "rosinality",
    "rosinality-legacy",
    "atlas",
    "proggan-legacy",
    "proggan-zip",
    "biggan",
    "nvidia-sg2",
    "nvidia-sg3",
)


def _randn(shape, g: torch.Generator, scale: float = 0.05) -> torch.Tensor:
    return torch.randn(shape, generator=g) * scale


def _discriminator(nbytes: int, g: torch.Generator) -> OrderedDict:
    """A state dict of about ``nbytes`` (conv weights), standing for the discriminator a file carries."""
    sd, left, i = OrderedDict(), nbytes // 4, 0
    while left > 0:
        n = min(left, 256 * 256 * 9)
        sd[f"convs.{i}.weight"] = _randn((n,), g)
        sd[f"convs.{i}.bias"] = _randn((16,), g)
        left, i = left - n, i + 1
    return sd


def _nbytes(sd: dict) -> int:
    return sum(t.numel() * t.element_size() for t in sd.values())


def _dcgan(folder: Path, scale: int, g: torch.Generator) -> Path:
    from engine.models.dcgan import DCGANGenerator

    torch.manual_seed(0)
    sd = DCGANGenerator(nz=100, ngf=32 * scale, nc=3, n_up=4).state_dict()
    path = folder / "dcgan.pt"
    torch.save({"epoch": 5, "netG_state_dict": sd, "netD_state_dict": _discriminator(_nbytes(sd), g)}, path)
    return path


def _rosinality_state(scale: int, g: torch.Generator) -> dict:
    from tests.hostile_files import rosinality_state

    return rosinality_state(resolution=32, style_dim=256, channels=128 * scale, n_mlp=8, seed=0)


def _rosinality(folder: Path, scale: int, g: torch.Generator, *, legacy: bool = False) -> Path:
    sd = _rosinality_state(scale, g)
    path = folder / ("rosinality_legacy.pt" if legacy else "rosinality.pt")
    # train.py's layout: g, d and g_ema (and latent_avg, which train.py does not store, to skip mean_w)
    blob = {"g": {k: v.clone() for k, v in sd.items()}, "d": _discriminator(_nbytes(sd), g), "g_ema": sd}
    torch.save({**blob, "latent_avg": torch.zeros(256)}, path, _use_new_zipfile_serialization=not legacy)
    return path


def _stylegan2(scale: int):
    from engine.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

    cfg = StyleGAN2Config.standard(32, channel_base=16384, channel_max=128 * scale, z_dim=256, w_dim=256)
    torch.manual_seed(0)
    return StyleGAN2Generator(cfg).eval()


def _atlas(folder: Path, scale: int, g: torch.Generator) -> Path:
    from engine.checkpoints.atlas import save_stylegan2

    return save_stylegan2(_stylegan2(scale), folder / "atlas.pt")


def _proggan(folder: Path, scale: int, g: torch.Generator, *, legacy: bool) -> Path:
    from engine.models.proggan import ProGANConfig

    w = 128 * scale
    cfg = ProGANConfig(w, (w, w, w, w // 2))
    sd = OrderedDict()
    for k in range(1, cfg.num_blocks + 1):
        c_in, c_out, kernel, _ = cfg.block(k)
        sd[f"layer{k}.conv.weight"] = _randn((c_out, c_in, kernel, kernel), g, 1.0)
        sd[f"layer{k}.wscale.b"] = _randn((c_out,), g)
    sd["output_32x32.conv.weight"] = _randn((3, w // 2, 1, 1), g, 1.0)
    sd["output_32x32.wscale.b"] = _randn((3,), g)
    path = folder / f"proggan_{'legacy' if legacy else 'zip'}.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    return path


def _biggan(folder: Path, scale: int, g: torch.Generator) -> Path:
    from engine.models.biggan import BigGANConfig

    cfg = dict(
        output_dim=32, z_dim=128, class_embed_dim=128, channel_width=16 * scale, num_classes=1000, eps=1e-4, n_stats=51,
        layers=[[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]], attention_layer_position=2,
    )  # fmt: skip
    config = BigGANConfig.from_json(cfg, "synthetic")
    sd = {k: _randn(v, g) for k, v in config.state_shapes().items()}
    for k in sd:
        if k.endswith("running_vars"):
            sd[k] = sd[k].abs() + 0.5
    out = folder / "biggan"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(cfg))
    torch.save(sd, out / "pytorch_model.bin", _use_new_zipfile_serialization=False)  # as published: legacy
    return out


def _nvidia_sg2(folder: Path, scale: int, g: torch.Generator) -> Path:
    from tests.fuzz_seeds import nvidia_records
    from tests.hostile_files import NvRecord, nvidia_pickle

    gen = _stylegan2(scale)
    nbytes = _nbytes(gen.state_dict())
    disc = NvRecord("Discriminator", params=_discriminator(nbytes, g))
    snap = {"G": nvidia_records(gen), "D": disc, "G_ema": nvidia_records(gen), "augment_pipe": None}
    path = folder / "nvidia_sg2.pkl"
    path.write_bytes(nvidia_pickle({**snap, "training_set_kwargs": {"resolution": 32}}))
    return path


def _nvidia_sg3(folder: Path, scale: int, g: torch.Generator) -> Path:
    from engine.models.stylegan3 import StyleGAN3Config, StyleGAN3Generator
    from tests.engine.sg3_pickles import records_of, tensor_bytes, write_snapshot

    torch.manual_seed(0)
    cfg = StyleGAN3Config.standard(32, z_dim=256, w_dim=256, channel_base=8192 * scale, channel_max=128 * scale)
    rec = records_of(StyleGAN3Generator(cfg).eval())
    from engine.checkpoints.nvidia_pkl import PersistentRecord

    disc = PersistentRecord("Discriminator", {"_parameters": _discriminator(tensor_bytes(rec), g)})
    path = folder / "nvidia_sg3.pkl"
    return write_snapshot({"G": records_of(StyleGAN3Generator(cfg).eval()), "D": disc, "G_ema": rec}, path)


def write(fmt: str, folder: Path, scale: int = 2) -> Path:
    """Write a synthetic checkpoint of ``fmt`` (one of ``FORMATS``) under ``folder``; returns its path."""
    g = torch.Generator().manual_seed(0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "dcgan":
        return _dcgan(folder, scale, g)
    if fmt in ("rosinality", "rosinality-legacy"):
        return _rosinality(folder, scale, g, legacy=fmt.endswith("legacy"))
    if fmt == "atlas":
        return _atlas(folder, scale, g)
    if fmt.startswith("proggan"):
        return _proggan(folder, scale, g, legacy=fmt.endswith("legacy"))
    if fmt == "biggan":
        return _biggan(folder, scale, g)
    if fmt == "nvidia-sg2":
        return _nvidia_sg2(folder, scale, g)
    if fmt == "nvidia-sg3":
        return _nvidia_sg3(folder, scale, g)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


# The child: every module a load may import is imported, and a small checkpoint of the same format
# is loaded first when given (it pages in the code of every torch operation the load uses and
# sets up the allocator: one-time costs of the process, not of holding a checkpoint); then the
# peak (VmHWM) is reset to the current RSS and the checkpoint is loaded.
_CHILD = r"""
import json, os, sys
import torch
torch.set_num_threads(1)
import scipy.stats, engine.catalog
from engine.models import load_generator

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

if len(sys.argv) > 2:
    load_generator(sys.argv[2], device="cpu")
open("/proc/self/clear_refs", "w").write("5")
before, anon = status("VmRSS"), status("RssAnon")
gen = load_generator(sys.argv[1], device="cpu")
peak = status("VmHWM") - before
after = status("RssAnon") - anon
seen, tensors = set(), 0
for t in gen.state_dict().values():
    if t.untyped_storage().data_ptr() not in seen:
        seen.add(t.untyped_storage().data_ptr())
        tensors += t.untyped_storage().nbytes()
print(json.dumps({"peak": peak, "anon_after": after, "tensors": tensors, "family": gen.family}), flush=True)
os._exit(0)
"""


def can_measure() -> bool:
    """Peak-RSS counters that can be reset (Linux ``/proc/self/clear_refs``)."""
    return Path("/proc/self/clear_refs").exists()


def measure(path: Path, warmup: Path | None = None, repo: Path = REPO, timeout: float = 600) -> dict:
    """``{"peak", "anon_after", "tensors", "family"}`` (bytes) of loading ``path`` in a fresh process,
    after loading ``warmup`` (a small file of the same format) if given.

    ``peak``: the growth of the resident set (anonymous and file-mapped pages) during the load;
    ``anon_after``: anonymous memory added and still held after it; ``tensors``: the loaded
    generator's tensor bytes (each storage once).
    """
    return finish_measure(start_measure(path, warmup, repo), timeout)


def start_measure(path: Path, warmup: Path | None = None, repo: Path = REPO) -> subprocess.Popen:
    """``measure`` started in the background: ``finish_measure(proc)`` waits for its answer. Each
    child measures its own resident set, so several can run at once."""
    args = [sys.executable, "-c", _CHILD, str(path)] + ([str(warmup)] if warmup is not None else [])
    proc = subprocess.Popen(args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.checkpoint = path
    return proc


def finish_measure(proc: subprocess.Popen, timeout: float = 600) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"loading {proc.checkpoint} failed: {err.strip()[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])
