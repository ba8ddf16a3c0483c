"""The torch side of the editor's previews: plain functions that run on worker threads.

Each takes the generator and a frozen request and returns uint8 numpy arrays (``[..., H, W, 3]``);
nothing here touches Qt, and nothing it returns is a tensor. Seeds (integers and projected images)
become codes in ``engine.seeds``, as on the command line.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import torch

from engine.errors import AtlasError
from engine.export import resize
from engine.jobs import run_job
from engine.latents import Latent
from engine.models.base import input_transform
from engine.render import (
    Prefix,
    compose_grid,
    materialize,
    render_batch,
    render_grid,
    render_prefix,
    render_resumed,
    resume_layer,
    to_uint8,
)
from engine.seeds import Seed, acts, applicable, restrict, seed_codes, widen_space


@dataclass(frozen=True)
class PreviewRequest:
    """What the preview shows.

    ``seeds``: integer seeds and projected images (``Seed``).
    ``space``: the space the seeds' codes are held in and edited in (``z``, ``w`` or ``w+``);
    in ``w+`` the w / w+ directions act only on layers ``layers = (start, stop)``.
    ``shifts``: ``(direction set, index, t)``, all applied to every seed (parameter directions
    are expanded on the worker thread). ``class_index``: the class of the integer seeds on a
    class-conditional model (the class picker), else ``None``.
    ``transform``: ``(rotate degrees, translate x, translate y)`` for models with an input
    transform (StyleGAN3; ``engine.models.base.input_transform``), or ``None``.
    """

    seeds: tuple[Seed, ...]
    psi: float = 1.0
    space: str = "z"
    layers: tuple[int, int] | None = None
    shifts: tuple[tuple[object, int, float], ...] = ()
    noise: str = "const"
    with_before: bool = True
    class_index: int | None = None
    transform: tuple[float, float, float] | None = None


@dataclass
class PreviewResult:
    after: np.ndarray  # [H, W, 3] the seeds side by side, edited
    before: np.ndarray | None  # the same without edits
    seconds: float
    size: tuple[int, int]  # one seed's image (H, W)


def tile(images: np.ndarray, pad: int = 6, background: int = 24) -> np.ndarray:
    """``[N, H, W, 3]`` -> one image, at most 4 per row."""
    n = images.shape[0]
    cols = min(n, 4)
    rows = -(-n // cols)
    cells = np.full((rows * cols, *images.shape[1:]), background, np.uint8)
    cells[:n] = images
    return compose_grid(cells.reshape(rows, cols, *images.shape[1:]), pad=pad if n > 1 else 0, background=background)


class BeforeCache:
    """What a slider move can reuse of recent seeds, so that it renders only the edited image:
    each seed's code (``seed_codes``), its unedited image, and its synthesis prefix before an
    edited layer (``engine.render.Prefix``: while a slider of a parameter direction moves, only
    the layers from that layer on run).

    Keyed per generator object (weakly: a closed model's entries go with it) by everything these
    depend on: the seed (a projected image by identity), space, psi, noise mode, the class and
    input transform (the request's and the generator view's own), and the generator's parameter
    versions (an in-place weight change invalidates them). Least recently used entries beyond
    ``size`` seeds per generator are dropped, and prefixes beyond ``prefix_bytes`` in all (a
    late layer of a large model holds megabytes per seed). Thread-safe.
    """

    def __init__(self, size: int = 64, prefix_bytes: int = 256 << 20) -> None:
        self.size = size
        self.prefix_bytes = prefix_bytes
        self._lock = threading.Lock()
        self._maps: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gen -> {key: {what: value}}
        self._prefixes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gen -> {(key, layer): Prefix}
        self._params: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # gen -> its parameters

    def key(self, gen, seed: Seed, req: PreviewRequest) -> tuple:
        cond = (_plain(req.class_index), _plain(req.transform))  # the class picker, StyleGAN3's transform
        bound = (_plain(gen.bound_classes), _plain(gen.bound_transform))
        with self._lock:
            params = self._params.get(gen)
            if params is None:  # walking the module tree costs more than the versions' sum
                params = self._params[gen] = list(gen.parameters())
        version = sum(p._version for p in params)
        return (seed, req.space, float(req.psi), req.noise, cond, bound, version)

    def _get(self, gen, key: tuple, what: str):
        with self._lock:
            entries = self._maps.get(gen)
            if entries is None or key not in entries:
                return None
            entries.move_to_end(key)
            return entries[key].get(what)

    def _put(self, gen, key: tuple, what: str, value) -> None:
        with self._lock:
            entries = self._maps.setdefault(gen, OrderedDict())
            entries.setdefault(key, {})[what] = value
            entries.move_to_end(key)
            while len(entries) > self.size:
                entries.popitem(last=False)

    def get(self, gen, key: tuple) -> np.ndarray | None:
        """The seed's unedited image."""
        return self._get(gen, key, "before")

    def put(self, gen, key: tuple, image: np.ndarray) -> None:
        self._put(gen, key, "before", np.array(image))  # a copy: not a view into a whole batch

    def code(self, gen, key: tuple) -> tuple[torch.Tensor, object] | None:
        """The seed's ``(code, Base or None)``, as ``seed_codes`` gave them."""
        return self._get(gen, key, "code")

    def put_code(self, gen, key: tuple, code: torch.Tensor, base) -> None:
        self._put(gen, key, "code", (code.clone(), base))

    def prefix(self, gen, key: tuple, layer: str) -> Prefix | None:
        """The seed's synthesis prefix before ``layer``."""
        with self._lock:
            entries = self._prefixes.get(gen)
            if entries is None or (key, layer) not in entries:
                return None
            entries.move_to_end((key, layer))
            return entries[(key, layer)]

    def put_prefix(self, gen, key: tuple, layer: str, prefix: Prefix) -> None:
        with self._lock:
            entries = self._prefixes.setdefault(gen, OrderedDict())
            entries[(key, layer)] = prefix
            entries.move_to_end((key, layer))
            total = sum(p.nbytes for p in entries.values())
            while len(entries) > 1 and (len(entries) > self.size or total > self.prefix_bytes):
                _, dropped = entries.popitem(last=False)
                total -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._maps = weakref.WeakKeyDictionary()
            self._prefixes = weakref.WeakKeyDictionary()
            self._params = weakref.WeakKeyDictionary()


def _plain(value) -> object:
    """A hashable, value-compared form of a class / transform value (tensors by their numbers)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return tuple(value.detach().cpu().reshape(-1).tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


BEFORE_CACHE = BeforeCache()


def render_preview(gen, req: PreviewRequest, cache: BeforeCache | None = BEFORE_CACHE) -> PreviewResult:
    """Render the preview and its unedited 'before'.

    The 'before' images come from ``cache`` where it has them (so a slider move renders one image
    per seed); seeds it lacks are rendered in the same batch as the edited images and stored.
    The seeds' codes come from the cache too, and when every shift is a parameter shift (and the
    model declares ``PREFIX_STATE``) so does each seed's synthesis prefix before the first edited
    layer: a slider move then runs only the layers from that layer on.
    """
    t0 = time.perf_counter()
    if not req.seeds:
        raise AtlasError("no seed given")
    gen.check_space(req.space)
    shifts = []
    for dset, k, t in req.shifts:
        d = materialize(dset, k)
        if not applicable(d, req.space, gen):
            continue
        d = restrict(d, req.space, req.layers)
        if float(t) == 0 or not acts(d):
            continue  # acts on nothing: the image is the unedited one
        shifts.append((d, float(t)))
    edited = bool(shifts)
    n = len(req.seeds)
    keys = [cache.key(gen, s, req) for s in req.seeds] if cache is not None else [None] * n
    cached = [cache.get(gen, key) if cache is not None else None for key in keys]
    want_before = req.with_before and edited
    missing = [i for i in range(n) if cached[i] is None] if want_before else []
    rows = [shifts] * n + [[]] * len(missing)
    transform = None
    if req.transform is not None:
        rotate, tx, ty = req.transform
        transform = input_transform(rotate, (tx, ty))
    layer = None
    if edited and cache is not None and req.noise in PREFIX_NOISE and not any(isinstance(s, Latent) for s in req.seeds):
        layer = resume_layer(gen, [d for d, _ in shifts])
    with torch.no_grad():
        if layer is not None:
            prefixes = _prefixes(gen, req, keys, layer, transform, cache)
            prefix = Prefix.cat(prefixes + [prefixes[i] for i in missing])
            imgs = render_resumed(gen, prefix, rows, psi=req.psi, noise=req.noise, transform=transform)
        else:
            codes, bases = _codes(gen, req, keys, cache)
            batch = torch.cat([codes, codes[missing]]) if missing else codes
            if bases is not None and missing:
                bases = bases + [bases[i] for i in missing]
            imgs = render_batch(
                gen, batch, rows, space=req.space, psi=req.psi, noise=req.noise, bases=bases, transform=transform
            )
        imgs = to_uint8(imgs)
    if cache is not None:
        if not edited:  # these are the 'before' images
            for i in range(n):
                cache.put(gen, keys[i], imgs[i])
        for j, i in enumerate(missing):
            cached[i] = imgs[n + j]
            cache.put(gen, keys[i], imgs[n + j])
    after = tile(imgs[:n])
    if want_before:
        before_imgs = np.stack([cached[i] if cached[i] is not None else imgs[n + missing.index(i)] for i in range(n)])
        before = tile(before_imgs)
    else:
        before = after
    return PreviewResult(after, before, time.perf_counter() - t0, tuple(imgs.shape[1:3]))


PREFIX_NOISE = ("const", "none")  # noise modes whose synthesis prefix is the same each time (not 'random')


def _codes(gen, req: PreviewRequest, keys: list, cache: BeforeCache | None) -> tuple[torch.Tensor, list | None]:
    """``seed_codes`` of the request's seeds, those the cache holds taken from it (drawing a seed's
    latent and mapping it costs as much as a small model's synthesis)."""
    n = len(req.seeds)
    held = [cache.code(gen, key) if cache is not None else None for key in keys]
    need = [i for i in range(n) if held[i] is None]
    if need:
        codes, bases = seed_codes(gen, [req.seeds[i] for i in need], req.space, req.psi, req.class_index)
        for j, i in enumerate(need):
            held[i] = (codes[j], bases[j] if bases is not None else None)
            if cache is not None:
                cache.put_code(gen, keys[i], codes[j], held[i][1])
    codes = torch.stack([c for c, _ in held]).to(gen.device)
    bases = [b for _, b in held]
    return codes, (bases if any(b is not None for b in bases) else None)


def _prefixes(gen, req: PreviewRequest, keys: list, layer: str, transform, cache: BeforeCache) -> list[Prefix]:
    """Each seed's synthesis prefix before ``layer``, from the cache or rendered (and stored)."""
    held = [cache.prefix(gen, key, layer) for key in keys]
    need = [i for i in range(len(keys)) if held[i] is None]
    if need:
        sub = replace(req, seeds=tuple(req.seeds[i] for i in need))
        codes, bases = _codes(gen, sub, [keys[i] for i in need], cache)
        made = render_prefix(
            gen, codes, layer, space=req.space, psi=req.psi, noise=req.noise, bases=bases, transform=transform
        )
        for j, i in enumerate(need):
            held[i] = made.select([j]) if len(need) > 1 else made
            cache.put_prefix(gen, keys[i], layer, held[i])
    return held


@dataclass(frozen=True)
class GridRequest:
    """Thumbnails of rows ``rows`` (direction indices of ``dset``) x shifts x seeds."""

    dset: object
    rows: tuple[int, ...]
    shifts: tuple[tuple[float, ...], ...]  # per row
    seeds: tuple[Seed, ...]
    psi: float = 1.0
    thumb: int = 96
    generation: int = 0
    class_index: int | None = None  # of the integer seeds (class-conditional models)


def render_grid_rows(gen, req: GridRequest) -> tuple[int, dict[int, np.ndarray]]:
    """``(generation, {row: uint8 [S, M, thumb, thumb_w, 3]})`` for the requested rows."""
    out: dict[int, np.ndarray] = {}
    space = widen_space(req.seeds)
    codes, bases = seed_codes(gen, req.seeds, space, req.psi, req.class_index)
    with torch.no_grad():
        # rows with the same shifts share one render_grid call
        groups: dict[tuple[float, ...], list[int]] = {}
        for i, row_shifts in enumerate(req.shifts):
            groups.setdefault(row_shifts, []).append(i)
        for shifts, members in groups.items():
            dirs = [materialize(req.dset, req.rows[i]) for i in members]
            # batches of 32 whatever they take: this runs to the end (stale pages are dropped, not cancelled)
            job = render_grid(
                gen, codes, dirs, list(shifts), bases, space=space, psi=req.psi, batch_size=32, pass_seconds=None
            )
            grid = run_job(job)
            grid = resize(grid, min(req.thumb, grid.shape[-3]), smooth=True)
            for j, i in enumerate(members):
                out[req.rows[i]] = np.ascontiguousarray(grid[j])
    return req.generation, out
