"""Batched rendering of edits: previews, grids and interpolation frames all come from here.

The unit of work is an *item*: a base code (a seed's z, or a projected w / w+) and the list of
(direction, t) shifts applied to it. ``render_batch`` renders B items in one forward pass:

* latent shifts are added to the code (z shifts before the mapping network, w / w+ shifts after
  truncation, w+ shifts only on their layer range);
* parameter shifts become one ``ParamEdit`` per layer whose ``delta`` stacks the distinct
  directions of the batch, so every (direction, t) pair is served by the same forward
  (``engine.models.base.apply_conv_edit`` for plain convolutions and linear layers, per-sample
  weights in StyleGAN2's grouped modulated convolution). Shifts of a style model's mapping
  layers act while z becomes w (before w / w+ shifts), so they need z codes.

Class-conditional models: each row has a class. A seed's class travels with it in its ``Base``
(``Base.class_index``), so the rows of grids, sweeps and videos keep their seed's class; rows
without one use the generator's (a ``conditioned`` view's) classes. ``with_classes`` puts classes
on a list of bases.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from engine.directions import Direction, DirectionSet, direction_delta
from engine.errors import AtlasError
from engine.jobs import PASS_SECONDS, Pacer, Progress
from engine.models.base import PREFIX_STATE, Generator, ParamEdit, SynthesisState

Shift = tuple[Direction, float]


@dataclass(frozen=True, eq=False)
class Base:
    """What a seed brings besides its code (a projected image's, see ``engine.latents``).

    ``shifts``: parameter shifts applied under every edit of that seed (pivotal tuning stores its
    weight deltas this way, with t = 1); ``noise``: ``{layer: [R, R]}`` noise maps used instead of
    the model's stored ones when rendering with ``noise="const"`` (StyleGAN2 projection fits them);
    ``class_index``: the seed's class on a class-conditional model (``None``: the generator's).
    """

    shifts: tuple[Shift, ...] = ()
    noise: Mapping[str, torch.Tensor] | None = None
    class_index: int | None = None


def with_classes(
    bases: Sequence[Base | None] | None, classes: Sequence[int] | None, n: int
) -> list[Base | None] | None:
    """``n`` bases whose ``class_index`` is ``classes[i]`` (``classes``: ``None``, or n ints).

    ``bases`` (``None`` or n entries) keep their shifts and noise maps.
    """
    if classes is None:
        return list(bases) if bases is not None else None
    if len(classes) != n or (bases is not None and len(bases) != n):
        raise ValueError(f"{len(classes)} classes for {n} codes")
    old = list(bases) if bases is not None else [None] * n
    return [
        Base(b.shifts, b.noise, int(c)) if b is not None else Base(class_index=int(c)) for b, c in zip(old, classes)
    ]


@dataclass
class Item:
    """One image to render: ``code`` (``[z_dim]``, ``[w_dim]`` or ``[num_ws, w_dim]``) plus shifts.

    ``base``: the seed's own tuned weights / noise maps (a projected image), or ``None``.
    """

    code: torch.Tensor
    shifts: Sequence[Shift] = ()
    base: Base | None = None


def check_set_fits(gen: Generator, dirset: DirectionSet) -> None:
    """Refuse a set whose directions cannot apply to ``gen``: a latent space it lacks, a latent
    size that differs, a layer it does not have or a weight shape that differs. One line, naming
    the set, the direction and both sizes."""
    where = dirset.path.name if dirset.path is not None else dirset.title
    found = (dirset.model or {}).get("name")
    hint = f" (the set was found on {found!r})" if found and found != gen.name else ""
    layers = {i.name: i for i in gen.editable_layers()}
    for k, d in enumerate(dirset.directions):
        if d.kind == "latent":
            if d.space not in gen.spaces:
                raise AtlasError(f"{where}: direction {k} lives in space {d.space}, which {gen.name} lacks{hint}")
            dim = gen.z_dim if d.space == "z" else gen.w_dim
            shape = tuple(d.vector.shape) if d.vector is not None else ()
            ok = len(shape) >= 1 and shape[-1] == dim
            if ok and d.space == "w+" and len(shape) == 2:
                ok = shape[0] == gen.num_ws
            if not ok:
                size = "x".join(map(str, shape)) or "no"
                raise AtlasError(
                    f"{where}: direction {k} has {size} components but {gen.name}'s {d.space} has {dim}{hint}"
                )
        else:
            if d.layer not in layers:
                raise AtlasError(f"{where}: direction {k} shifts layer {d.layer}, which {gen.name} lacks{hint}")
            if d.basis is not None:
                basis = dirset.bases.get(d.basis)
                shape = tuple(basis.shape) if basis is not None else None
            else:
                shape = tuple(d.delta.shape) if d.delta is not None else None
            if shape is not None and shape != tuple(layers[d.layer].shape):
                raise AtlasError(
                    f"{where}: direction {k} shifts {d.layer} of shape {shape} but {gen.name}'s is "
                    f"{tuple(layers[d.layer].shape)}{hint}"
                )


class _DeltaCache:
    """Expanded parameter deltas of one direction set, shared by the threads that render it.

    The preview, the grid and export jobs expand the same directions from different worker
    threads: each delta is computed once (a per-direction lock; tens of MB for dense bases) and
    every thread gets the same ``Direction`` object, so batches deduplicate it by identity.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.directions: dict[int, Direction] = {}
        self.pending: dict[int, threading.Lock] = {}

    def get(self, dirset: DirectionSet, k: int) -> Direction:
        with self.lock:
            if k in self.directions:
                return self.directions[k]
            key_lock = self.pending.setdefault(k, threading.Lock())
        with key_lock:
            with self.lock:
                if k in self.directions:
                    return self.directions[k]
            d = dirset.directions[k]
            full = Direction(**{**d.__dict__, "delta": direction_delta(d, dirset.bases)})
            with self.lock:
                self.directions[k] = full
                self.pending.pop(k, None)
            return full


_CACHES_LOCK = threading.Lock()


def materialize(dirset: DirectionSet, k: int) -> Direction:
    """Direction ``k`` with its parameter delta filled in (computed once per set, thread-safe)."""
    d = dirset.directions[k]
    if d.kind != "param" or d.delta is not None:
        return d
    cache = dirset.__dict__.get("_delta_cache")
    if cache is None:
        with _CACHES_LOCK:
            cache = dirset.__dict__.setdefault("_delta_cache", _DeltaCache())
    return cache.get(dirset, k)


_SPACE_ORDER = {"z": 0, "w": 1, "w+": 2}


def render_batch(
    gen: Generator,
    codes: torch.Tensor,
    shifts: Sequence[Sequence[Shift]] | None = None,
    *,
    space: str = "z",
    psi: float = 1.0,
    cutoff: int | None = None,
    noise: str = "const",
    noise_generator: torch.Generator | None = None,
    bases: Sequence[Base | None] | None = None,
    classes=None,
    transform: torch.Tensor | None = None,
) -> torch.Tensor:
    """Render ``codes [B, ...]`` (in ``space``) each with its own shifts; returns ``[B, C, H, W]``.

    ``shifts[b]`` lists ``(direction, t)`` pairs for sample b; parameter directions must carry
    their ``delta`` (see ``materialize``). ``bases[b]`` (optional) is sample b's ``Base``: its
    shifts go under sample b's edits, its noise maps replace the stored ones and its class is
    sample b's class. ``classes`` (class-conditional models; an int, or one per row) overrides
    the bases' classes; without either the generator's bound classes apply. ``transform``
    (``[3, 3]``, models with an input transform, see ``base.input_transform``) applies to every
    row. Gradients flow if the inputs require them.
    """
    gen.check_space(space)
    dev = gen.device
    codes = codes.to(dev)
    B = codes.shape[0]
    shifts = list(shifts) if shifts is not None else [()] * B
    if len(shifts) != B:
        raise ValueError(f"{len(shifts)} shift lists for {B} codes")
    if classes is None and bases is not None:
        classes = _base_classes(gen, bases, B)
    if bases is not None and any(b is not None for b in bases):
        if len(bases) != B:
            raise ValueError(f"{len(bases)} bases for {B} codes")
        shifts = [tuple(b.shifts) + tuple(row) if b is not None else row for b, row in zip(bases, shifts)]
        noise = _base_noise(gen, bases, noise, dev)
    # one class per row (None for unconditional models); explicit, so that deduplicated rows keep theirs
    row_classes = gen.condition(B, classes=classes).classes

    latent_spaces = {d.space for row in shifts for d, _ in row if d.kind == "latent"}
    if "z" in latent_spaces and space != "z":
        raise AtlasError(f"a z-space direction cannot be applied to a code in {space}")
    target = max([space, *latent_spaces], key=_SPACE_ORDER.__getitem__)
    gen.check_space(target)

    edits = _param_edits(shifts, dev)
    # z shifts go in before the mapping network
    if "z" in latent_spaces:
        codes = codes + _latent_offsets(shifts, "z", codes)
    if target != space:
        # shifts of mapping layers act while z becomes w, before the w / w+ shifts
        early, edits = gen.split_mapping_edits(edits)
        ws = gen.codes_to_ws(codes, space, psi=psi, cutoff=cutoff, classes=row_classes, edit=early)
        codes = ws[:, 0] if target == "w" else ws
        code_space = target
    else:
        code_space = space
    if code_space in ("w", "w+"):
        if "w" in latent_spaces:
            off = _latent_offsets(shifts, "w", codes[:, 0] if code_space == "w+" else codes)
            codes = codes + (off.unsqueeze(1) if code_space == "w+" else off)
        if "w+" in latent_spaces:
            codes = codes + _wplus_offsets(shifts, codes, gen.num_ws)

    if (
        edits
        and gen.supports_shared_prefix
        and isinstance(noise, str)
        and not any(e.delta.requires_grad or e.t.requires_grad for e in edits)
    ):
        # Grids repeat each code across many (direction, t): run the layers before the edit once per code
        # (a code with another class is another row: the class is part of the key)
        flat = codes.reshape(B, -1)
        if row_classes is not None:
            flat = torch.cat([flat, row_classes.to(flat.dtype).unsqueeze(1)], dim=1)
        distinct, source = torch.unique(flat, dim=0, return_inverse=True)
        if distinct.shape[0] < B:
            if row_classes is not None:
                row_classes = distinct[:, -1].round().long()
                distinct = distinct[:, :-1]
            codes = distinct.reshape(-1, *codes.shape[1:])
            edits = [ParamEdit(e.layer, e.delta, e.index, e.t, source) for e in edits]
    return gen.decode(
        codes,
        code_space,
        psi=psi,
        cutoff=cutoff,
        noise=noise,
        edit=edits,
        noise_generator=noise_generator,
        classes=row_classes,
        transform=transform,
    )


def resume_layer(gen: Generator, directions: Sequence[Direction]) -> str | None:
    """The layer at which renders of ``directions`` can start from a cached synthesis prefix
    (``Prefix``): the first layer any of them edits, when all are parameter directions and the
    model declares ``PREFIX_STATE``; else ``None`` (a latent shift, or an edit of a mapping layer,
    changes every layer)."""
    if not directions or not gen.supports(PREFIX_STATE) or any(d.kind != "param" for d in directions):
        return None
    infos = gen.editable_layers()
    if any(info.mapping for info in infos if info.name in {d.layer for d in directions}):
        return None  # a mapping layer's edit changes the synthesis input ws itself: nothing to resume
    order = {info.name: k for k, info in enumerate(infos)}
    return min((d.layer for d in directions), key=lambda name: order.get(name, len(order)))


@dataclass(frozen=True)
class Prefix:
    """Codes rendered up to a layer (``render_prefix``): their synthesis input ``ws`` (``[N, ...]``,
    ``Generator.codes_to_ws``) and the model's ``SynthesisState`` before that layer, with the rows'
    classes. Rows can be picked and joined, so a preview keeps one per seed."""

    ws: torch.Tensor
    state: SynthesisState

    @property
    def rows(self) -> int:
        return self.ws.shape[0]

    def select(self, rows: Sequence[int]) -> Prefix:
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.ws.device)
        return Prefix(self.ws[idx].clone(), self.state.select(rows))

    @staticmethod
    def cat(prefixes: Sequence[Prefix]) -> Prefix:
        if len(prefixes) == 1:
            return prefixes[0]
        return Prefix(torch.cat([p.ws for p in prefixes]), SynthesisState.cat([p.state for p in prefixes]))

    @property
    def nbytes(self) -> int:
        return self.ws.numel() * self.ws.element_size() + self.state.nbytes


def render_prefix(
    gen: Generator,
    codes: torch.Tensor,
    layer: str,
    *,
    space: str = "z",
    psi: float = 1.0,
    noise: str = "const",
    bases: Sequence[Base | None] | None = None,
    transform: torch.Tensor | None = None,
) -> Prefix:
    """Run the layers before ``layer`` for ``codes [N, ...]`` (in ``space``), without edits.

    ``noise``: ``const`` or ``none`` (a prefix is reused, so it must not be random). ``bases``
    may carry classes only (a projected image's tuned weights and noise maps are not resumable:
    render those with ``render_batch``). ``transform``: the input transform of every row."""
    if bases is not None and any(b is not None and (b.shifts or b.noise) for b in bases):
        raise ValueError("a prefix cannot carry a projected image's tuned weights or noise maps")
    B = codes.shape[0]
    classes = _base_classes(gen, bases, B) if bases is not None else None
    cond = gen.condition(B, classes=classes, transform=transform, truncation=psi)
    ws = gen.codes_to_ws(codes.to(gen.device), space, psi=psi, classes=cond.classes)
    state = gen.synthesis_prefix(ws, layer, noise=noise, cond=cond)
    return Prefix(ws, SynthesisState(state.layer, state.tensors, cond.classes))


def render_resumed(
    gen: Generator,
    prefix: Prefix,
    shifts: Sequence[Sequence[Shift]],
    *,
    psi: float = 1.0,
    noise: str = "const",
    transform: torch.Tensor | None = None,
) -> torch.Tensor:
    """``render_batch`` of the prefix's codes with parameter ``shifts`` (one list per row, each
    of ``prefix.state.layer`` or a later layer; deltas materialised), run from the prefix on:
    ``[N, C, H, W]``, the same images as a whole forward. ``psi``, ``noise`` and ``transform``
    must be those the prefix was made with."""
    if len(shifts) != prefix.rows:
        raise ValueError(f"{len(shifts)} shift lists for {prefix.rows} prefix rows")
    if any(d.kind != "param" for row in shifts for d, _ in row):
        raise ValueError("a latent shift cannot resume from a prefix (it changes every layer)")
    cond = gen.condition(prefix.rows, classes=prefix.state.classes, transform=transform, truncation=psi)
    edits = _param_edits(shifts, gen.device)
    return gen.resume_synthesis(prefix.state, prefix.ws, noise=noise, edit=edits, cond=cond)


def _base_classes(gen: Generator, bases: Sequence[Base | None], B: int) -> list[int] | None:
    """The bases' classes, one per row (rows without one take the generator's), or ``None`` when no base has one."""
    if len(bases) != B:
        raise ValueError(f"{len(bases)} bases for {B} codes")
    cls = [b.class_index if b is not None else None for b in bases]
    if all(c is None for c in cls):
        return None
    if any(c is None for c in cls):
        default = gen.condition(B).classes.tolist()  # the view's classes (or the "choose a class" error)
        cls = [d if c is None else c for c, d in zip(cls, default)]
    return cls


def _base_noise(gen: Generator, bases: Sequence[Base | None], noise, dev: torch.device):
    """Per-sample noise maps ``{layer: [B, 1, R, R]}`` where some base has its own, else ``noise``."""
    if noise != "const" or not any(b is not None and b.noise for b in bases):
        return noise
    stored = gen.noise_maps()
    maps = {}
    for name, const in stored.items():
        if not any(b is not None and b.noise and name in b.noise for b in bases):
            continue
        rows = [b.noise[name] if b is not None and b.noise and name in b.noise else const for b in bases]
        maps[name] = torch.stack([r.to(dev, const.dtype).reshape(const.shape) for r in rows]).unsqueeze(1)
    return maps


def _latent_offsets(shifts, space: str, like: torch.Tensor) -> torch.Tensor:
    off = torch.zeros_like(like)
    for b, row in enumerate(shifts):
        for d, t in row:
            if d.kind == "latent" and d.space == space:
                off[b] += float(t) * d.vector.to(like.device, like.dtype)
    return off


def _wplus_offsets(shifts, ws: torch.Tensor, num_ws: int) -> torch.Tensor:
    off = torch.zeros_like(ws)
    for b, row in enumerate(shifts):
        for d, t in row:
            if d.kind == "latent" and d.space == "w+":
                lo, hi = d.layers if d.layers is not None else (0, num_ws)
                v = d.vector.to(ws.device, ws.dtype)
                if not 0 <= lo <= hi <= num_ws or (v.dim() == 2 and v.shape[0] != num_ws):
                    raise AtlasError(
                        f"a w+ direction on layers {lo}..{hi - 1} of shape {list(v.shape)} does not fit "
                        f"this model's {num_ws} w+ layers"
                    )
                off[b, lo:hi] += float(t) * (v if v.dim() == 1 else v[lo:hi])
    return off


def _param_edits(shifts, dev: torch.device) -> list[ParamEdit]:
    """One ParamEdit per (layer, position in the shift list), deltas deduplicated by identity."""
    edits: list[ParamEdit] = []
    slots: dict[tuple[str, int], list[tuple[int, Direction, float]]] = {}
    for b, row in enumerate(shifts):
        seen: dict[str, int] = {}
        for d, t in row:
            if d.kind != "param":
                continue
            if d.delta is None:
                raise ValueError("parameter direction without a delta; use render.materialize")
            j = seen.get(d.layer, 0)
            seen[d.layer] = j + 1
            slots.setdefault((d.layer, j), []).append((b, d, float(t)))
    B = len(shifts)
    for (layer, _), entries in slots.items():
        uniq: dict[int, int] = {}
        deltas = []
        index = torch.zeros(B, dtype=torch.long)
        tt = torch.zeros(B)
        for b, d, t in entries:
            key = id(d.delta)
            if key not in uniq:
                uniq[key] = len(deltas)
                deltas.append(d.delta)
            index[b] = uniq[key]
            tt[b] = t
        delta = torch.stack([x.to(dev, torch.float32) for x in deltas])
        edits.append(ParamEdit(layer, delta, index.to(dev), tt.to(dev)))
    return edits


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, C, H, W]`` in [-1, 1] -> ``[B, H, W, C]`` uint8 (grey images get 3 channels)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def render_items(
    gen: Generator,
    items: Sequence[Item],
    *,
    space: str = "z",
    psi: float = 1.0,
    cutoff: int | None = None,
    noise: str = "const",
    batch_size: int = 32,
    raw: bool = False,
    transform: torch.Tensor | None = None,
    pass_seconds: float | None = PASS_SECONDS,
) -> Iterator[Progress]:
    """Job: render ``items`` in batches. Returns uint8 ``[N, H, W, C]`` (float NCHW if ``raw``).

    Batches hold at most ``batch_size`` items, fewer when a batch would take longer than
    ``pass_seconds`` (``engine.jobs.Pacer``; ``None``: always ``batch_size``, for callers that
    never cancel); the job yields after each. ``transform``: the input transform of every item
    (see ``render_batch``)."""
    out = []
    n = len(items)
    yield Progress(0, n, stage="render")
    with torch.no_grad():
        for sl in Pacer(batch_size, seconds=pass_seconds, device=gen.device).slices(n):
            chunk = items[sl]
            codes = torch.stack([it.code for it in chunk])
            bases = [it.base for it in chunk] if any(it.base is not None for it in chunk) else None
            imgs = render_batch(
                gen,
                codes,
                [it.shifts for it in chunk],
                space=space,
                psi=psi,
                cutoff=cutoff,
                noise=noise,
                bases=bases,
                transform=transform,
            )
            out.append(imgs.float().cpu() if raw else to_uint8(imgs))
            yield Progress(sl.stop, n, stage="render")
    if raw:
        return torch.cat(out) if out else torch.zeros(0)
    return np.concatenate(out) if out else np.zeros((0, gen.resolution, gen.resolution, 3), np.uint8)


def grid_items(
    codes: torch.Tensor,
    directions: Sequence[Direction],
    shifts: Sequence[float],
    bases: Sequence[Base | None] | None = None,
) -> list[Item]:
    """Items of a K x S x M grid (directions x shifts x codes), in that row-major order.

    ``bases[m]``: code m's ``Base`` (a projected image's tuned weights / noise), if any.
    """
    M = codes.shape[0]
    if bases is not None and len(bases) != M:
        raise ValueError(f"{len(bases)} bases for {M} codes")
    return [
        Item(codes[m], ((d, float(t)),), bases[m] if bases is not None else None)
        for d in directions
        for t in shifts
        for m in range(M)
    ]


def render_grid(
    gen: Generator,
    codes: torch.Tensor,
    directions: Sequence[Direction],
    shifts: Sequence[float],
    bases: Sequence[Base | None] | None = None,
    **kw,
) -> Iterator[Progress]:
    """Job: the K x S x M grid as uint8 ``[K, S, M, H, W, C]`` (``bases``: see ``grid_items``)."""
    K, S, M = len(directions), len(shifts), codes.shape[0]
    flat = yield from render_items(gen, grid_items(codes, directions, shifts, bases), **kw)
    return flat.reshape(K, S, M, *flat.shape[1:])


def sweep(T: float, frames: int, *, there_and_back: bool = True) -> np.ndarray:
    """Shift values of a morph: ``-T .. T .. -T`` (a seamless loop) or ``-T .. T``."""
    if frames < 2:
        return np.zeros(max(frames, 0))
    if not there_and_back:
        return np.linspace(-T, T, frames)
    phase = np.arange(frames) / frames  # one period, last frame joins the first
    return -T * np.cos(2 * np.pi * phase)


def path_shifts(directions: Sequence[Direction], T: float | Sequence[float], frames: int) -> list[list[Shift]]:
    """A path through several directions: ramp up each one in turn, then back to the start.

    Frame f carries the cumulative shifts, so the path visits ``+T e1``, ``+T e1 + T e2``, ...
    and returns to the origin, closing the loop.
    """
    K = len(directions)
    Ts = [float(T)] * K if np.isscalar(T) else [float(x) for x in T]
    keys = np.linspace(0, 2 * K, frames, endpoint=False)
    out = []
    for s in keys:
        row = []
        for k, d in enumerate(directions):
            up = np.clip(s - k, 0, 1)  # ramps up during segment k
            down = np.clip(s - K - k, 0, 1)  # ramps down during segment K + k
            amount = (up - down) * Ts[k]
            if amount != 0:
                row.append((d, float(amount)))
        out.append(row)
    return out


def compose_grid(cells: np.ndarray, pad: int = 2, background: int = 255) -> np.ndarray:
    """``[R, C, H, W, 3]`` -> one ``[R*(H+pad)+pad, C*(W+pad)+pad, 3]`` image."""
    R, C, H, W, ch = cells.shape
    out = np.full((R * (H + pad) + pad, C * (W + pad) + pad, ch), background, np.uint8)
    for r in range(R):
        for c in range(C):
            y, x = pad + r * (H + pad), pad + c * (W + pad)
            out[y : y + H, x : x + W] = cells[r, c]
    return out


def grid_image(grid: np.ndarray, pad: int = 2) -> np.ndarray:
    """A rendered ``[K, S, M, H, W, 3]`` grid as one image: rows = (direction, seed), columns = shifts."""
    K, S, M = grid.shape[:3]
    rows = grid.transpose(0, 2, 1, 3, 4, 5).reshape(K * M, S, *grid.shape[3:])
    return compose_grid(rows, pad=pad)
