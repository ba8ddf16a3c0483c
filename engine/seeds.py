"""Seeds: what a user asks to render (integer seeds and projected images) and the codes they stand for.

The command line (``render``, ``export``) and the editor (preview, grid, export dialog) turn seeds
into codes here, so that both show the same image for the same seed:

* ``seed_codes``: integer seeds (NVIDIA's recipe, ``gen.seed_latents``, truncated by psi and
  mapped into the space asked for) and projected images (``engine.latents.Latent``: their own code,
  tuned weights, noise maps and class) as one batch of codes with their ``engine.render.Base``;
* ``widen_space``: the space that holds them all (a projected w code cannot be written in z, so a
  w or w+ image widens z -> w -> w+);
* ``applicable`` / ``restrict``: which directions act on codes held in a space, and the
  w+ layer range that w / w+ directions are limited to when codes are held in w+.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from engine.directions import Direction
from engine.errors import AtlasError
from engine.latents import Latent
from engine.render import Base

Seed = int | Latent  # an integer seed, or a projected image
SPACES = ("z", "w", "w+")  # in widening order: a code moves only to the right (z -> w -> w+)


def seed_label(seed: Seed) -> str:
    """How a seed is written in seed fields: ``5``, or ``@name`` for a projected image."""
    if isinstance(seed, Latent):
        return "@" + (getattr(seed, "seed_name", None) or seed.name)  # seed_name: given by the editor's workspace
    return str(int(seed))


def widen_space(seeds: Sequence[Seed], space: str = "z") -> str:
    """The space to hold ``seeds`` in: ``space``, widened to a projected image's w / w+ if needed."""
    for s in seeds:
        if isinstance(s, Latent) and SPACES.index(s.space) > SPACES.index(space):
            space = s.space
    return space


def seed_codes(
    gen, seeds: Sequence[Seed], space: str, psi: float = 1.0, classes: int | Sequence[int] | None = None
) -> tuple[torch.Tensor, list[Base | None] | None]:
    """``(codes [N, ...] in space, bases or None)`` of integer seeds and projected images, in order.

    Integer seeds are drawn with ``gen.seed_latents`` (truncated by ``psi``) and mapped into
    ``space``. On a class-conditional model they take ``classes`` (one for all, or one per integer
    seed), carried in their ``Base``; without one, the generator's bound classes (a ``conditioned``
    view), else the model's one-line "choose a class" error. A projected image gives its own rows
    (``Latent.codes_in``: ``AtlasError`` if ``space`` is narrower than its own) and its ``Base``
    (tuned weights, noise maps, the class it was fitted on). Codes are on ``gen.device``.
    """
    if not seeds:
        raise AtlasError("no seed given")
    gen.check_space(space)
    ints = [int(s) for s in seeds if not isinstance(s, Latent)]
    int_classes = None
    if classes is not None and gen.num_classes:
        int_classes = [int(classes)] * len(ints) if isinstance(classes, int) else [int(c) for c in classes]
        if len(int_classes) != len(ints):
            raise AtlasError(f"{len(int_classes)} classes for {len(ints)} seeds; give one, or one per seed")
    int_codes: list[torch.Tensor] = []
    if ints:
        if int_classes is None and gen.num_classes:
            gen.condition(len(ints))  # the one-line "choose a class" error, before any work
        z = gen.seed_latents(ints, psi=psi).to(gen.device)
        if space != "z":
            with torch.no_grad():
                z = gen.encode(z, space, psi=psi, classes=int_classes)
        int_codes = list(z)
    codes, bases = [], []
    i = 0
    for s in seeds:
        if isinstance(s, Latent):
            codes.extend(s.codes_in(gen, space, psi=psi))
            bases.extend(s.bases())
        else:
            codes.append(int_codes[i])
            bases.append(Base(class_index=int_classes[i]) if int_classes is not None else None)
            i += 1
    return torch.stack(codes), (bases if any(b is not None for b in bases) else None)


def applicable(d: Direction, space: str, gen=None) -> bool:
    """Whether direction ``d`` can act on codes held in ``space``: z directions need z codes, and
    so do shifts of ``gen``'s mapping-network layers (``LayerInfo.mapping``; checked when ``gen``
    is given)."""
    if space == "z":
        return True
    if d.kind == "latent":
        return d.space != "z"
    return gen is None or d.layer not in {i.name for i in gen.mapping_layers()}


def not_applicable_reason(d: Direction) -> str:
    """Why ``applicable`` refused ``d`` (one line for a tooltip)."""
    if d.kind == "latent":
        return "a z-space direction acts on z codes: switch Space to z"
    return f"a shift of {d.layer} (the mapping network) acts on z codes: switch Space to z"


def restrict(d: Direction, space: str, layers: tuple[int, int] | None) -> Direction:
    """``d`` limited to the w+ layers ``[start, stop)`` when codes are held in ``w+``.

    Only w / w+ latent directions change (a w direction becomes a w+ one on those layers; a w+
    direction keeps the overlap of its own range with them, empty if none); others, and any
    direction outside w+ or without ``layers``, come back as they are.
    """
    if space != "w+" or d.kind != "latent" or d.space not in ("w", "w+") or layers is None:
        return d
    lo, hi = layers
    if d.layers is not None:
        lo, hi = max(lo, d.layers[0]), min(hi, d.layers[1])
    if hi <= lo:
        lo, hi = 0, 0
    return replace(d, space="w+", layers=(lo, hi))


def acts(d: Direction) -> bool:
    """Whether ``d`` changes anything (a w+ direction restricted to no layers does not)."""
    return not (d.kind == "latent" and d.layers is not None and d.layers[1] <= d.layers[0])
