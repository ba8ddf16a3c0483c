"""Seed files and loaders of every file format the app reads, for ``tests/fuzzing.py``.

The seeds are tiny (kilobytes) so that a few hundred mutations per format run in seconds: a
direction set and a ``.latent`` for ``tiny_stylegan2``, and generator checkpoints in each
checkpoint format. Loading a set or a latent also renders it on the tiny model, as the app would:
a file that loads must render. ``FORMATS`` lists them; a new format is one more line, e.g.::

    FuzzFormat("proggan .pth", fixture_seed("proggan/proggan_gld_res32.pth"), load_model)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

from engine.analysis.sampling import check_fits
from engine.checkpoints.atlas import save_stylegan2
from engine.directions import Direction, DirectionSet, ParamBasis
from engine.latents import Latent, load_latent, save_latent
from engine.models import load_generator
from engine.models.stylegan2 import StyleGAN2Generator, fir_filter
from engine.render import materialize, render_batch
from tests.engine.tiny_generators import save_tiny_dcgan, tiny_stylegan2
from tests.fuzzing import FuzzFormat, json_mutate, pickle_ranges, safetensors_header, zip_member_ranges
from tests.hostile_files import NvRecord, nvidia_pickle, rosinality_state

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@cache
def tiny_model() -> StyleGAN2Generator:
    """The model the set and latent seeds are made for (16 px, z 12, w 10)."""
    return tiny_stylegan2(seed=3)


# ---- loaders: what the app does with each file ------------------------------------------------------------


def load_model(path: Path) -> object:
    return load_generator(str(path), device="cpu")


def load_and_render_set(path: Path) -> object:
    """Load a set, check it against the tiny model and render every direction at both ends of its range."""
    gen = tiny_model()
    dset = DirectionSet.load(path)
    check_fits(gen, dset)
    shifts = [[(materialize(dset, k), t)] for k, d in enumerate(dset.directions) for t in d.range]
    with torch.no_grad():
        return render_batch(gen, gen.seed_latents([0] * len(shifts)), shifts)


def load_and_render_latent(path: Path) -> object:
    gen = tiny_model()
    lat = load_latent(path, gen)
    with torch.no_grad():
        return render_batch(gen, lat.codes_in(gen, lat.space), space=lat.space, bases=lat.bases())


# ---- seeds -------------------------------------------------------------------------------------------------


def set_seed(folder: Path) -> Path:
    """A set for ``tiny_model()``: z, w and w+ (layer range) directions, an SVD basis and a dense delta."""
    gen = tiny_model()
    g = torch.Generator().manual_seed(0)
    layer = [i for i in gen.editable_layers() if not i.mapping][2]  # a synthesis layer
    W = gen.layer_weight(layer.name).detach()
    U, S, Vh = torch.linalg.svd(W.reshape(W.shape[0], -1), full_matrices=False)
    dirs = [
        Direction("latent", vector=torch.randn(gen.z_dim, generator=g), space="z", score=2.0),
        Direction("latent", vector=torch.randn(gen.w_dim, generator=g), space="w", range=(-2.0, 2.0)),
        Direction("latent", vector=torch.randn(gen.w_dim, generator=g), space="w+", layers=(1, 4)),
        Direction("param", vector=torch.eye(S.numel())[1], layer=layer.name, basis="svd", range=(-0.2, 0.2)),
        Direction("param", layer=layer.name, delta=torch.randn(W.shape, generator=g), range=(-0.1, 0.1)),
    ]
    dirs[0].annotation.name, dirs[0].annotation.tags, dirs[0].annotation.rating = "smile", ["face"], 4
    ds = DirectionSet(
        "fuzz",
        {"name": gen.name, "identity": gen.identity, "z_dim": gen.z_dim, "resolution": gen.resolution},
        dirs,
        params={"k": 5},
        bases={"svd": ParamBasis(layer.name, "svd", tuple(W.shape), float(W.norm()), {"U": U, "S": S, "V": Vh.T})},
        metrics={"rca": 0.5},
    )
    return ds.save(folder / "set.json")


def set_tensor_file(path: Path) -> Path:
    return path.with_name(json.loads(path.read_text())["tensors"]["file"])


def record_tensor_sha(path: Path, target: Path) -> None:
    """What a careful writer does after changing the tensor file: record its new sha256."""
    man = json.loads(path.read_text())
    man["tensors"]["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    path.write_text(json.dumps(man))


def latent_seed(folder: Path) -> Path:
    """A w code with fitted noise maps and tuned weights for ``tiny_model()``."""
    gen = tiny_model()
    g = torch.Generator().manual_seed(1)
    noise = {name: torch.randn(1, *m.shape, generator=g) for name, m in gen.noise_maps().items()}
    layer = [i for i in gen.editable_layers() if not i.mapping][1]  # a synthesis layer
    lat = Latent(
        torch.randn(1, gen.w_dim, generator=g),
        "w",
        {"name": gen.name, "identity": gen.identity, "source": "tiny"},
        image={"path": "photo.png", "size": [16, 16]},
        metrics={"psnr": 20.0},
        noise=noise,
        tuning={layer.name: 0.01 * torch.randn(layer.shape, generator=g)},
    )
    return save_latent(lat, folder / "photo.latent")


def record_latent_checksum(path: Path, target: Path) -> None:
    """What a careful writer does after changing a ``.latent``'s tensors: store their new checksum
    (when the file still parses; otherwise it stays as mutated)."""
    from safetensors.torch import load, save

    from engine.latents import _META_KEY, tensors_digest

    data = path.read_bytes()
    try:
        n = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8 : 8 + n])["__metadata__"]
        man = json.loads(meta[_META_KEY])
        tensors = load(data)
        man["tensors_sha256"] = tensors_digest(tensors)
        path.write_bytes(save(tensors, metadata={**meta, _META_KEY: json.dumps(man)}))
    except Exception:  # noqa: BLE001 - a mutation that broke the file stays broken
        return


def latent_manifest_mutate(data: bytes, rng) -> tuple[bytes, str]:
    """``json_mutate`` on the manifest inside a ``.latent``'s header (tensors and checksum kept)."""
    from safetensors.torch import load, save

    from engine.latents import _META_KEY

    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + n])["__metadata__"]
    text, what = json_mutate(meta[_META_KEY].encode(), rng)
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return data, "no change (mutation broke UTF-8)"
    return save(load(data), metadata={**meta, _META_KEY: text.decode("utf-8")}), f"manifest: {what}"


def rosinality_seed(folder: Path) -> Path:
    path = folder / "rosinality.pt"
    torch.save({"g_ema": rosinality_state(), "latent_avg": torch.zeros(8)}, path)
    return path


def atlas_seed(folder: Path) -> Path:
    return save_stylegan2(tiny_stylegan2(seed=4, resolution=8), folder / "atlas.pt")


def dcgan_seed(folder: Path) -> Path:
    return Path(save_tiny_dcgan(folder / "dcgan.pt"))


def nvidia_records(gen: StyleGAN2Generator) -> NvRecord:
    """``gen`` (skip architecture) as the ``G_ema`` record of a stylegan2-ada-pytorch snapshot."""
    cfg, sd = gen.config, gen.state_dict()
    w_dim = cfg.w_dim

    def fc(prefix: str, activation: str, lr_mul: float, fan_in: int) -> NvRecord:
        attrs = {"activation": activation, "weight_gain": lr_mul / fan_in**0.5, "bias_gain": lr_mul}
        return NvRecord("FullyConnectedLayer", attrs, {"weight": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"]})

    def layer(prefix: str, r: int, up: int) -> NvRecord:
        params = {k: sd[f"{prefix}.{k}"] for k in ("weight", "noise_strength", "bias")}
        buffers = {"resample_filter": fir_filter(), "noise_const": sd[f"{prefix}.noise_const"]}
        attrs = {"resolution": r, "up": up, "use_noise": True, "activation": "lrelu", "conv_clamp": None}
        affine = fc(f"{prefix}.affine", "linear", 1.0, w_dim)
        return NvRecord("SynthesisLayer", attrs, params, buffers, {"affine": affine})

    blocks = {}
    for r in cfg.block_resolutions:
        pre = f"synthesis_net.b{r}"
        mods = {} if r == 4 else {"conv0": layer(f"{pre}.conv0", r, 2)}
        mods["conv1"] = layer(f"{pre}.conv1", r, 1)
        rgb = {"weight": sd[f"{pre}.torgb.weight"], "bias": sd[f"{pre}.torgb.bias"]}
        mods["torgb"] = NvRecord(
            "ToRGBLayer", {"conv_clamp": None}, rgb, modules={"affine": fc(f"{pre}.torgb.affine", "linear", 1.0, w_dim)}
        )
        attrs = {"resolution": r, "architecture": "skip", "use_fp16": False, "is_last": r == cfg.resolution}
        params = {"const": sd[f"{pre}.const"]} if r == 4 else {}
        blocks[f"b{r}"] = NvRecord("SynthesisBlock", attrs, params, {"resample_filter": fir_filter()}, mods)
    dims = [cfg.z_dim] + [cfg.hidden] * (cfg.mapping_layers - 1)
    fcs = {
        f"fc{i}": fc(f"mapping_net.fcs.{i}", "lrelu", cfg.mapping_lr_mul, dims[i]) for i in range(cfg.mapping_layers)
    }
    mapping = NvRecord(
        "MappingNetwork",
        {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": w_dim, "num_layers": cfg.mapping_layers},
        buffers={"w_avg": sd["w_avg"]},
        modules=fcs,
    )
    synthesis = NvRecord("SynthesisNetwork", {"w_dim": w_dim, "img_resolution": cfg.resolution}, modules=blocks)
    attrs = {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": w_dim, "img_resolution": cfg.resolution, "img_channels": 3}
    return NvRecord("Generator", attrs, modules={"synthesis": synthesis, "mapping": mapping})


def nvidia_seed(folder: Path) -> Path:
    """A stylegan2-ada-pytorch snapshot of an 8 px tiny StyleGAN2 (about 40 KB)."""
    gen = tiny_stylegan2(seed=5, resolution=8)
    path = folder / "nvidia.pkl"
    snapshot = {"G": None, "D": None, "G_ema": nvidia_records(gen), "augment_pipe": None}
    path.write_bytes(nvidia_pickle({**snapshot, "training_set_kwargs": {"resolution": 8}}))
    return path


def fixture_seed(relative: str) -> Callable[[Path], Path]:
    """A seed that is a copy of a file or folder of ``../shared/fixtures`` (slower, more faithful)."""

    def seed(folder: Path) -> Path:
        src, dst = FIXTURES / relative, folder / Path(relative).name
        if src.is_dir():
            return Path(shutil.copytree(src, dst))
        return Path(shutil.copy(src, dst))

    return seed


def inside(name: str) -> Callable[[Path], Path]:
    """``target=``: mutate the file ``name`` of a model folder."""
    return lambda folder: folder / name


FORMATS = [
    FuzzFormat("direction set .json", set_seed, load_and_render_set, mutator=json_mutate),
    FuzzFormat(
        "direction set .safetensors (sha256 kept matching)",
        set_seed,
        load_and_render_set,
        target=set_tensor_file,
        fixup=record_tensor_sha,
        hot=safetensors_header,
    ),
    FuzzFormat(".latent", latent_seed, load_and_render_latent, hot=safetensors_header),
    FuzzFormat(".latent manifest", latent_seed, load_and_render_latent, mutator=latent_manifest_mutate),
    FuzzFormat(
        ".latent (checksum kept matching)",
        latent_seed,
        load_and_render_latent,
        fixup=record_latent_checksum,
        hot=safetensors_header,
    ),
    FuzzFormat("rosinality .pt", rosinality_seed, load_model, hot=zip_member_ranges),
    FuzzFormat("NVIDIA .pkl", nvidia_seed, load_model, hot=pickle_ranges),
    FuzzFormat("GAN Atlas .pt", atlas_seed, load_model, hot=zip_member_ranges),
    FuzzFormat("DCGAN .pt", dcgan_seed, load_model, hot=zip_member_ranges),
]

# The real reference files (each load takes longer): the suite runs a few dozen cases of each,
# scripts/fuzz_files.py --fixture-cases thousands.
FIXTURE_FORMATS = [
    FuzzFormat("NVIDIA .pkl (nvada_orig_res16 fixture)", fixture_seed("nvada_orig_res16.pkl"), load_model),
    FuzzFormat(
        "rosinality .pt (s32_narrow fixture)",
        fixture_seed("rosinality_s32_narrow.pt"),
        load_model,
        hot=zip_member_ranges,
    ),
    FuzzFormat("StyleGAN3-T .pkl (sg3t_res32 fixture)", fixture_seed("stylegan3/sg3t_res32.pkl"), load_model),
    FuzzFormat("StyleGAN3-R .pkl (sg3r_res32 fixture)", fixture_seed("stylegan3/sg3r_res32.pkl"), load_model),
    FuzzFormat(
        "conditional StyleGAN2 .pkl (sg2ada_cond_res32 fixture)",
        fixture_seed("stylegan3/sg2ada_cond_res32.pkl"),
        load_model,
    ),
    FuzzFormat("ProGAN .pth (proggan_gld_res32 fixture)", fixture_seed("proggan/proggan_gld_res32.pth"), load_model),
    FuzzFormat(
        "ProGAN .pth (proggan_netdissect_res32 fixture)",
        fixture_seed("proggan/proggan_netdissect_res32.pth"),
        load_model,
    ),
    FuzzFormat(
        "BigGAN folder: pytorch_model.bin (biggan_res32 fixture)",
        fixture_seed("biggan/biggan_res32"),
        load_model,
        target=inside("pytorch_model.bin"),
    ),
    FuzzFormat(
        "BigGAN folder: config.json (biggan_res32 fixture)",
        fixture_seed("biggan/biggan_res32"),
        load_model,
        target=inside("config.json"),
        mutator=json_mutate,
    ),
]
