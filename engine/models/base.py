"""The generator protocol every model in GAN Atlas implements.

Spaces and codes
----------------
A *latent* is what a seed gives: ``z`` of shape ``[B, z_dim]``. A *code* is a latent expressed
in one of the model's spaces, produced by ``encode`` and turned into images by ``decode``:

=======  ======================  =================================================
space    code shape              meaning
=======  ======================  =================================================
``z``    ``[B, z_dim]``          the input latent; truncation (psi) is applied in decode
``w``    ``[B, w_dim]``          one intermediate latent shared by every layer (StyleGAN)
``w+``   ``[B, num_ws, w_dim]``  one w per synthesis layer (StyleGAN)
=======  ======================  =================================================

Latent edits add ``t * d`` to the code (``engine.render``); truncation is applied before an edit
in w / w+, as SeFa and GANSpace do, and after it in z.

Parameter edits
---------------
A ``ParamEdit`` shifts one named layer's weight per sample: sample ``b`` is rendered with
``W + t[b] * delta[index[b]]``. Models thread it down to the layer named ``edit.layer`` so one
batched forward serves every (direction, t) pair; see ``apply_conv_edit`` for plain convolutions
and linear layers.

Edits of a *mapping* layer (``LayerInfo.mapping``: a fully connected layer of a style model's
mapping network z -> w) change every ws of a sample, so they act on z codes only: ``decode``
passes them to ``mapping`` (``codes_to_ws``) and the others to ``synthesis``. Truncation still
pulls towards the unedited model's ``truncation_center``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import AtlasError

NOISE_MODES = ("const", "random", "none")


@dataclass(frozen=True)
class LayerInfo:
    """A layer whose weight parameter-space methods may shift.

    ``kind`` is ``"conv"``, ``"conv_transpose"``, ``"linear"`` (a fully connected layer, weight
    ``[out_features, in_features]``), ``"modconv"`` (StyleGAN2 modulated conv, weight
    ``[C_out, C_in, k, k]``) or ``"torgb"`` (StyleGAN2 toRGB: modulated 1x1 conv without
    demodulation, ``[img_channels, C_in, 1, 1]``); ``resolution`` is the layer's output resolution
    (0 when its output is not an image-shaped map, e.g. a linear layer's). ``mapping``: the layer
    belongs to the mapping network z -> w (an edit there changes all of w, so it needs z codes).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    resolution: int
    mapping: bool = False

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class ParamEdit:
    """Per-sample weight shifts of one layer: sample b uses ``W + t[b] * delta[index[b]]``.

    ``delta``: ``[U, *weight_shape]``; ``index``: long ``[B]`` in ``[0, U)``; ``t``: ``[B]``.
    All three may carry gradients (the Hessian method differentiates through ``delta``).

    ``source`` (optional, long ``[B]``) is the *shared-prefix* form used for grids: the model was
    given only the distinct codes ``[M, ...]`` and sample b continues from code ``source[b]``.
    Layers before the first edited layer then run once per distinct code, and at that layer the
    batch is expanded to B rows. Only models with ``supports_shared_prefix`` accept it.
    """

    layer: str
    delta: torch.Tensor
    index: torch.Tensor
    t: torch.Tensor
    source: torch.Tensor | None = None

    @staticmethod
    def single(layer: str, delta: torch.Tensor, batch: int, t: float | torch.Tensor = 1.0) -> ParamEdit:
        """The same shift ``t * delta`` (delta with the weight's shape) for every sample."""
        index = torch.zeros(batch, dtype=torch.long, device=delta.device)
        tt = torch.as_tensor(t, dtype=delta.dtype, device=delta.device).expand(batch)
        return ParamEdit(layer, delta.unsqueeze(0), index, tt)

    def to(self, device: torch.device) -> ParamEdit:
        src = None if self.source is None else self.source.to(device)
        return ParamEdit(self.layer, self.delta.to(device), self.index.to(device), self.t.to(device), src)

    def per_sample(self) -> torch.Tensor:
        """``[B, *weight_shape]``: each sample's own shift (materialised; for modulated convs)."""
        shape = (-1,) + (1,) * (self.delta.dim() - 1)
        return self.delta[self.index] * self.t.reshape(shape).to(self.delta.dtype)


EditArg = Union["ParamEdit", Sequence["ParamEdit"], None]


def as_edit_list(edit: EditArg) -> list[ParamEdit]:
    """Normalise ``None`` / one edit / several edits to a list."""
    if edit is None:
        return []
    if isinstance(edit, ParamEdit):
        return [edit]
    return list(edit)


def edits_for(edits: list[ParamEdit], layer: str) -> list[ParamEdit]:
    return [e for e in edits if e.layer == layer]


def shared_source(edits: list[ParamEdit]) -> torch.Tensor | None:
    """The common ``source`` of a list of edits (see ``ParamEdit``), or ``None``."""
    sources = [e.source for e in edits if e.source is not None]
    if not sources:
        return None
    if len(sources) != len(edits) or any(s is not sources[0] and not torch.equal(s, sources[0]) for s in sources):
        raise ValueError("all parameter edits of one call must share the same source index")
    return sources[0]


def apply_conv_edit(
    x: torch.Tensor,
    out: torch.Tensor,
    edits: list[ParamEdit],
    conv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    source: torch.Tensor | None = None,
) -> torch.Tensor:
    """Add parameter edits to the output of a plain (or transposed) convolution or a linear layer.

    A convolution is linear in its weight, ``conv(x, W + t D) = conv(x, W) + t conv(x, D)``,
    so the unshifted output ``out`` is computed once for the whole batch and each distinct
    delta is convolved only with the inputs that use it. ``conv(x, weight)`` must be the
    layer's own convolution without bias. Shapes: ``x [N, ...]``, ``out [N, ...]``; with
    ``source [B]`` (shared-prefix form) ``x``/``out`` hold the N distinct inputs, sample b
    continues from row ``source[b]``, ``conv(x, D)`` is computed once per distinct
    (input, delta) pair whatever the number of shifts t, and the result has B rows.
    """
    if source is not None:
        out = out[source]
    for edit in edits:
        index = edit.index
        t = edit.t.to(out.dtype)
        extra = torch.zeros_like(out)
        for u in torch.unique(index).tolist():
            rows = (index == u).nonzero(as_tuple=True)[0]
            if not t.requires_grad:
                # a row with t = 0 adds 0 * conv(x, D): nothing, and no gradient to x or D either
                rows = rows[t[rows] != 0]
                if rows.numel() == 0:
                    continue
            delta = edit.delta[u].to(x.dtype)
            if source is None:
                d_out = conv(x[rows], delta)
            else:
                inputs, which = torch.unique(source[rows], return_inverse=True)
                d_out = conv(x[inputs], delta)[which]
            scale = t[rows].reshape((-1,) + (1,) * (out.dim() - 1))
            extra = extra.index_add(0, rows, d_out * scale)
        out = out + extra
    return out


def uniform_shift(edits: list[ParamEdit]) -> torch.Tensor | None:
    """The weight shift ``sum_e t_e delta_e`` when every sample has the same one, else ``None``.

    Only for gradient-free edits: a layer whose samples all share one shift (a preview, the
    naive loop) convolves once with the shifted weight instead of adding ``t conv(x, delta)``.
    """
    total = None
    for e in edits:
        if e.delta.requires_grad or e.t.requires_grad or e.index.numel() == 0:
            return None
        if bool((e.index != e.index[0]).any()) or bool((e.t != e.t[0]).any()):
            return None
        shift = e.t[0].to(e.delta.dtype) * e.delta[e.index[0]]
        total = shift if total is None else total + shift
    return total


def per_sample_shift(
    edits: list[ParamEdit], batch: int, shape: Sequence[int], like: torch.Tensor
) -> torch.Tensor | None:
    """``[B, *shape]`` the summed shift of each sample (for modulated convs), or ``None``."""
    if not edits:
        return None
    total = torch.zeros((batch, *shape), dtype=like.dtype, device=like.device)
    for e in edits:
        total = total + e.per_sample().to(like.dtype)
    return total


# ---- capabilities ---------------------------------------------------------------------------
# What a generator declares in ``Generator.capabilities``. Methods ask ``gen.supports(CAP)``; they
# never probe with ``hasattr`` or look at class names. Each capability names the hook it promises.
MAPPING = "mapping"  # a mapping network z -> w: spaces w and w+, truncation (mapping(), truncation_center)
STYLE_AFFINES = "style_affines"  # style_affines(): per-layer affine maps w -> style (SeFa, GANSpace in w)
FIRST_LATENT_LAYER = "first_latent_layer"  # first_latent_layer(): the linear map of z in the first layer (SeFa)
EARLY_ACTIVATION = "early_activation"  # early_activation(z, depth): an early feature map (GANSpace in z)
CLASSES = "classes"  # num_classes > 0; class_names(); rows need a class (see Condition)
INPUT_TRANSFORM = "input_transform"  # synthesis honours Condition.transform (StyleGAN3's input transform)
NOISE_INPUTS = "noise_inputs"  # per-sample noise maps (noise_maps(), synthesis(noise={...}))
SHARED_PREFIX = "shared_prefix"  # synthesis accepts ParamEdit.source (see ParamEdit)
PREFIX_STATE = "prefix_state"  # synthesis_prefix() / resume_synthesis(): stop before a layer, resume there later

CAPABILITIES = (
    MAPPING,
    STYLE_AFFINES,
    FIRST_LATENT_LAYER,
    EARLY_ACTIVATION,
    CLASSES,
    INPUT_TRANSFORM,
    NOISE_INPUTS,
    SHARED_PREFIX,
    PREFIX_STATE,
)


@dataclass(frozen=True)
class Condition:
    """What a forward pass is conditioned on besides the code, resolved for one batch.

    ``classes``: long ``[B]`` class indices (class-conditional models only, else ``None``).
    ``transform``: ``[3, 3]`` float, the input transform of models that declare
    ``INPUT_TRANSFORM`` (StyleGAN3: the matrix NVIDIA's ``gen_images.py`` stores, i.e. the inverse
    of ``make_transform(translate, rotate)``), else ``None`` (identity).
    ``truncation``: the truncation psi of the call, for models whose synthesis reads it (BigGAN:
    its batch-norm statistics depend on it); ``None`` outside ``decode`` (the model's default).
    Style models apply psi in ``mapping`` and ignore it here.
    """

    classes: torch.Tensor | None = None
    transform: torch.Tensor | None = None
    truncation: float | None = None


@dataclass(frozen=True)
class SynthesisState:
    """A synthesis stopped before layer ``layer`` (``PREFIX_STATE``): what ``resume_synthesis`` needs.

    ``tensors``: the model's activations at that point, each batch-first (``None`` where the
    model has none yet), so that the states of single rows can be cached and concatenated;
    ``classes``: the rows' resolved classes (``Condition.classes``) or ``None``. The layers
    before ``layer`` saw no parameter edit. A preview caches one per seed: while a slider of a
    parameter direction of ``layer`` moves, only the layers from ``layer`` on run again.
    """

    layer: str
    tensors: tuple[torch.Tensor | None, ...]
    classes: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        for t in self.tensors:
            if t is not None:
                return t.shape[0]
        return 0 if self.classes is None else self.classes.shape[0]

    def select(self, rows: torch.Tensor | Sequence[int]) -> SynthesisState:
        """The state of the rows ``rows`` (a copy of each, so that one row kept in a cache does
        not keep its whole batch alive)."""
        idx = torch.as_tensor(list(rows) if not isinstance(rows, torch.Tensor) else rows, dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx.to(t.device)].clone()

        return SynthesisState(self.layer, tuple(pick(t) for t in self.tensors), pick(self.classes))

    @staticmethod
    def cat(states: Sequence[SynthesisState]) -> SynthesisState:
        """One state of the rows of ``states`` in order (all stopped before the same layer)."""
        first = states[0]
        if any(s.layer != first.layer or len(s.tensors) != len(first.tensors) for s in states):
            raise ValueError("synthesis states stopped at different layers cannot be joined")

        def join(parts: list) -> torch.Tensor | None:
            return None if parts[0] is None else torch.cat(parts)

        tensors = tuple(join([s.tensors[i] for s in states]) for i in range(len(first.tensors)))
        return SynthesisState(first.layer, tensors, join([s.classes for s in states]))

    @property
    def nbytes(self) -> int:
        parts = [*self.tensors, self.classes]
        return sum(t.numel() * t.element_size() for t in parts if t is not None)


def input_transform(rotate: float = 0.0, translate: Sequence[float] = (0.0, 0.0)) -> torch.Tensor:
    """``[3, 3]`` float32: the input transform that rotates the image by ``rotate`` degrees and
    translates it by ``translate = (x, y)`` (in units of the image size).

    The meaning of NVIDIA's ``gen_images.py``: ``m = make_transform(translate, rotate)``, and the
    generator stores (and ``Condition.transform`` holds) its inverse, as ``gen_images`` copies
    ``inv(m)`` into ``G.synthesis.input.transform``.
    """
    tx, ty = (float(v) for v in translate)
    a = math.radians(float(rotate))
    s, c = math.sin(a), math.cos(a)
    m = np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]])
    return torch.from_numpy(np.linalg.inv(m).astype(np.float32))


@dataclass(frozen=True)
class LatentLayer:
    """The linear part of the generator's first layer as a function of z (SeFa's ``A``).

    ``matrix``: ``[out_features, z_dim]`` float64, such that the first layer's pre-activation
    moves by ``matrix @ dz`` when z moves by ``dz`` (eval-mode normalisations folded in).
    ``normalize_rows``: SeFa's default for this model (``normalize=auto``).
    """

    name: str
    matrix: torch.Tensor
    normalize_rows: bool = False


class Generator(nn.Module):
    """Base class of every generator. Subclasses set the attributes and override the hooks.

    Attributes: ``name`` (display name), ``family`` (the registered model family, e.g.
    ``"stylegan2"``), ``capabilities`` (see the constants above), ``identity`` (sha256 of the
    checkpoint, or a stable hash of the weights), ``z_dim``, ``w_dim`` (``None`` without an
    intermediate space), ``num_ws`` (0 without w+), ``num_classes`` (0: unconditional),
    ``resolution``, ``img_channels``, ``default_edit_layer``.
    Images are NCHW, nominally in ``[-1, 1]`` (not clamped: trained generators overshoot).

    Conditioning: class-conditional models take ``classes`` (an int, a sequence or a long
    tensor: one class for every row, one per row, or a list that the rows repeat) in
    ``encode`` / ``decode``; ``conditioned(classes=..., transform=...)`` returns a view that
    shares the weights and uses those values whenever a call gives none (a discovery job on
    "class 207" runs on such a view, and never changes the generator other threads use). A
    view's classes are a pool: row i of any batch gets ``classes[i % len(classes)]``, so a
    job's batches of any size cycle through them. Code that renders pairs of the same latents
    (``engine.discovery.shifts``, ``hessian``) resolves the classes of its latents once with
    ``condition`` and passes them explicitly to both halves.
    """

    name: str = "generator"
    family: str = "generator"
    capabilities: frozenset[str] = frozenset()
    identity: str = ""
    z_dim: int = 0
    w_dim: int | None = None
    num_ws: int = 0
    num_classes: int = 0
    resolution: int = 0
    img_channels: int = 3
    default_edit_layer: str | None = None
    source: str = ""  # the path or built-in name it was loaded from
    # why a capability is missing, where a model can tell (e.g. an adapter whose first layer does not
    # receive z itself); shown by ``info`` and in the refusals of methods that need it
    capability_notes: Mapping[str, str] = MappingProxyType({})
    bound_classes: torch.Tensor | None = None  # set on views made by conditioned()
    bound_transform: torch.Tensor | None = None
    truncation_range: tuple[float, float] = (0.0, 2.0)  # psi values the model accepts (GUI range)

    # ---- capabilities ---------------------------------------------------------------------
    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    def require(self, capability: str, what: str) -> None:
        """Raise ``AtlasError`` (naming ``what`` needs it) unless the model declares ``capability``."""
        if not self.supports(capability):
            note = self.capability_notes.get(capability)
            raise AtlasError(
                f"{what} needs a model with {capability.replace('_', ' ')}; model '{self.name}' "
                f"({self.family}) does not provide one" + (f": {note}" if note else "")
            )

    @property
    def supports_shared_prefix(self) -> bool:
        return self.supports(SHARED_PREFIX)

    def style_affines(self) -> list[tuple[str, int, torch.Tensor]]:
        """``(layer name, ws index, A [C_in, w_dim])`` per style-reading layer (``STYLE_AFFINES``)."""
        self.require(STYLE_AFFINES, "style affines")
        raise NotImplementedError

    def first_latent_layer(self) -> LatentLayer:
        """The first layer's linear map of z (``FIRST_LATENT_LAYER``)."""
        self.require(FIRST_LATENT_LAYER, "the first latent layer")
        raise NotImplementedError

    @property
    def activation_depths(self) -> tuple[int, int]:
        """``(lowest, highest)`` depth ``early_activation`` accepts (``EARLY_ACTIVATION``)."""
        return (0, -1)

    @property
    def default_activation_depth(self) -> int:
        return self.activation_depths[0]

    def activation_name(self, depth: int) -> str:
        """Where the activation ``early_activation(z, depth)`` is taken, for reports."""
        return f"early activation at depth {depth}"

    def early_activation(self, z: torch.Tensor, depth: int, *, classes=None) -> torch.Tensor:
        """``[B, ...]`` the activation after ``depth`` early layers for latents ``z`` (``EARLY_ACTIVATION``)."""
        self.require(EARLY_ACTIVATION, "an early activation")
        raise NotImplementedError

    def class_names(self) -> list[str]:
        """One display name per class (``[]`` for unconditional models); the index where none is known."""
        return [str(i) for i in range(self.num_classes)]

    def find_class(self, token: str | int) -> int:
        """The class index of ``token``: an index, or a class name (case-insensitive, exact).

        Raises a one-line ``AtlasError`` for a model without classes, an index out of range, or
        an unknown or ambiguous name.
        """
        if self.num_classes <= 0:
            raise AtlasError(f"model '{self.name}' is not class-conditional; it takes no class")
        text = str(token).strip()
        if text.lstrip("-").isdigit():
            c = int(text)
            if not 0 <= c < self.num_classes:
                raise AtlasError(
                    f"class {c} is out of range: model '{self.name}' has classes 0..{self.num_classes - 1}"
                )
            return c
        hits = [i for i, n in enumerate(self.class_names()) if n.lower() == text.lower()]
        if not hits:
            raise AtlasError(
                f"'{text}' is not a class name of model '{self.name}' (give an index 0..{self.num_classes - 1})"
            )
        if len(hits) > 1:
            raise AtlasError(
                f"'{text}' names classes {', '.join(map(str, hits))} of model '{self.name}'; give the index"
            )
        return hits[0]

    @property
    def classes_bound(self) -> list[int] | None:
        """The classes of a view made by ``conditioned`` (as plain ints), else ``None``."""
        return None if self.bound_classes is None else [int(c) for c in self.bound_classes.tolist()]

    # ---- conditioning ---------------------------------------------------------------------
    def conditioned(self, classes=None, transform: torch.Tensor | None = None) -> Generator:
        """A view sharing this generator's weights whose calls default to these classes / transform."""
        import copy

        view = copy.copy(self)
        if classes is not None:
            view.bound_classes = self._class_tensor(classes)
        if transform is not None:
            self.require(INPUT_TRANSFORM, "an input transform")
            view.bound_transform = torch.as_tensor(transform, dtype=torch.float32).reshape(3, 3)
        return view

    def detached(self) -> Generator:
        """A structural copy whose parameters share this generator's storage (no weights are
        copied) but never require grad.

        A job that differentiates through the generator (reconstructor training, Hessian products,
        projection) runs on such a copy: neither the ``requires_grad`` flags nor the ``.grad`` of
        the generator that other threads render from ever change. Buffers and tensor attributes
        are shared too; the copy is as cheap as the module tree.
        """
        import copy

        memo: dict[int, object] = {}
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and id(p) not in memo:
                    memo[id(p)] = nn.Parameter(p.detach(), requires_grad=False)
            for b in m._buffers.values():
                if b is not None:
                    memo[id(b)] = b
            for v in vars(m).values():
                if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter):
                    memo[id(v)] = v
        return copy.deepcopy(self, memo)

    def _class_tensor(self, classes) -> torch.Tensor:
        if self.num_classes <= 0:
            raise AtlasError(f"model '{self.name}' is not class-conditional; it takes no class")
        try:
            c = torch.as_tensor(classes).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise AtlasError(f"classes {classes!r}: expected class indices") from None
        if c.numel() == 0 or c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise AtlasError(f"classes {classes!r}: expected one or more integer class indices")
        c = c.to(torch.long)
        if int(c.min()) < 0 or int(c.max()) >= self.num_classes:
            raise AtlasError(
                f"class {int(c.max()) if int(c.max()) >= self.num_classes else int(c.min())} is out of range: "
                f"model '{self.name}' has classes 0..{self.num_classes - 1}"
            )
        return c

    def condition(
        self,
        batch: int,
        *,
        classes=None,
        transform: torch.Tensor | None = None,
        truncation: float | None = None,
    ) -> Condition:
        """The ``Condition`` of a batch of ``batch`` rows: explicit values first, then the view's bound ones.

        Explicit ``classes``: one for every row, one per row, or a list whose length divides the
        batch (the rows repeat it); anything else is refused. A view's bound classes cycle over
        the rows (see the class docstring).
        """
        c = None
        if classes is not None or self.num_classes > 0:
            c = self._class_tensor(classes) if classes is not None else self.bound_classes
            if c is None:
                raise AtlasError(
                    f"model '{self.name}' is class-conditional ({self.num_classes} classes); choose a class "
                    "(--class N on the command line)"
                )
            m = c.numel()
            if m == 1:
                c = c.expand(batch)
            elif batch % m == 0:
                c = c.repeat(batch // m)
            elif classes is None:  # a view's pool: rows cycle through it
                c = c[torch.arange(batch) % m]
            else:
                raise AtlasError(f"{m} classes do not fit a batch of {batch} rows (give 1, or one per row)")
            c = c.to(self.device)
        tr = transform if transform is not None else self.bound_transform
        if tr is not None:
            self.require(INPUT_TRANSFORM, "an input transform (rotate / translate)")
            tr = torch.as_tensor(tr, dtype=torch.float32, device=self.device).reshape(3, 3)
        return Condition(c, tr, None if truncation is None else float(truncation))

    # ---- spaces -------------------------------------------------------------------------
    @property
    def spaces(self) -> tuple[str, ...]:
        return ("z", "w", "w+") if self.num_ws > 0 else ("z",)

    @property
    def has_truncation(self) -> bool:
        return self.num_ws > 0

    def check_space(self, space: str) -> None:
        if space not in self.spaces:
            raise AtlasError(
                f"model '{self.name}' has no latent space '{space}'; its spaces are {', '.join(self.spaces)}"
            )

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    # ---- latents ------------------------------------------------------------------------
    def seed_latents(self, seeds: Sequence[int], *, psi: float = 1.0) -> torch.Tensor:
        """``[len(seeds), z_dim]`` float32 on the CPU: ``RandomState(s).randn(z_dim)`` per seed.

        This is NVIDIA's ``generate.py`` recipe, so seed s shows the same image here as there,
        and seed s is the same latent whatever other seeds are asked for with it. ``psi``: the
        truncation the seeds will be rendered at; models that truncate in ``mapping`` ignore it,
        models whose seeds are drawn truncated (BigGAN) use it.
        """
        rows = [np.random.RandomState(int(s) % (2**32)).randn(self.z_dim) for s in seeds]
        return torch.from_numpy(np.stack(rows).astype(np.float32)) if rows else torch.zeros(0, self.z_dim)

    def sample_latents(self, n: int, seed: int | None = None, device: torch.device | None = None) -> torch.Tensor:
        """``[n, z_dim]`` standard normal latents for bulk sampling (training, statistics)."""
        g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        z = torch.randn(n, self.z_dim, generator=g)
        return z.to(device) if device is not None else z

    # ---- encode / decode ----------------------------------------------------------------
    def mapping(
        self,
        z: torch.Tensor,
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        classes: torch.Tensor | None = None,
        edit: EditArg = None,
    ) -> torch.Tensor:
        """``z [B, z_dim] -> ws [B, num_ws, w_dim]`` with truncation; only for style models.

        ``classes``: long ``[B]`` (already resolved by ``condition``) for class-conditional mappings.
        ``edit``: parameter edits of mapping layers (``LayerInfo.mapping``); with a shared-prefix
        ``source`` the result has one row per sample (``len(source)``), not per code.
        """
        raise AtlasError(f"model '{self.name}' has no mapping network (no w space)")

    def synthesis(
        self,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        noise_generator: torch.Generator | None = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        """``ws [B, num_ws, w_dim] -> images``; for models without w, ``ws`` is ``z``.

        Models with noise inputs also accept ``noise`` as per-sample maps ``{layer: [B, 1, R, R]}``
        (see ``noise_maps``). ``cond``: the batch's resolved ``Condition`` (classes for models
        whose synthesis reads them, the input transform).
        """
        raise NotImplementedError

    def synthesis_prefix(
        self, ws: torch.Tensor, layer: str, *, noise: str = "const", cond: Condition | None = None
    ) -> SynthesisState:
        """Run ``synthesis(ws, noise=noise, cond=cond)`` up to the input of editable layer
        ``layer`` and stop there (``PREFIX_STATE``; ``noise``: ``const`` or ``none``, so that the
        prefix is the same each time). A model may stop earlier, at a point its layer loop can
        resume from (StyleGAN2: the start of the layer's block); ``state.layer`` is ``layer``."""
        self.require(PREFIX_STATE, "resuming a synthesis")
        raise NotImplementedError

    def resume_synthesis(
        self,
        state: SynthesisState,
        ws: torch.Tensor,
        *,
        noise: str = "const",
        edit: EditArg = None,
        cond: Condition | None = None,
    ) -> torch.Tensor:
        """The images of ``synthesis(ws, noise=noise, edit=edit, cond=cond)`` computed from
        ``state`` (``synthesis_prefix`` of the same ``ws``, ``noise`` and ``cond``) on: only the
        layers from ``state.layer`` run. ``edit``: parameter edits of ``state.layer`` or later
        layers (``resume_edits`` checks them), one entry per row of ``state``."""
        self.require(PREFIX_STATE, "resuming a synthesis")
        raise NotImplementedError

    def resume_edits(self, state: SynthesisState, edit: EditArg, rows: int) -> list[ParamEdit]:
        """The checked edits of a resumed synthesis of ``rows`` rows: none before ``state.layer``,
        no shared-prefix ``source``."""
        if state.rows not in (0, rows):
            raise AtlasError(f"a synthesis state of {state.rows} rows cannot resume {rows} codes")
        edits, source = self.checked_edits(edit, rows)
        if source is not None:
            raise AtlasError("a resumed synthesis takes no shared-prefix source")
        order = {info.name: k for k, info in enumerate(self.editable_layers())}
        start = order[state.layer]
        early = [e.layer for e in edits if order[e.layer] < start]
        if early:
            raise AtlasError(f"cannot resume at {state.layer}: the edit of {early[0]} lies before it")
        return edits

    def noise_maps(self) -> dict[str, torch.Tensor]:
        """``{layer name: stored noise map [R, R]}`` of the noise inputs (empty: the model has none)."""
        return {}

    @property
    def truncation_center(self) -> torch.Tensor | None:
        """``[w_dim]`` the w that psi < 1 pulls towards, if the model has one."""
        return None

    def encode(
        self,
        z: torch.Tensor,
        space: str = "z",
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        classes=None,
    ) -> torch.Tensor:
        """Express latents ``z`` in ``space`` (see the module docstring for shapes)."""
        self.check_space(space)
        if space == "z":
            return z
        cond = self.condition(z.shape[0], classes=classes)
        ws = self.mapping(z, psi=psi, cutoff=cutoff, classes=cond.classes)
        return ws[:, 0] if space == "w" else ws

    def codes_to_ws(
        self,
        code: torch.Tensor,
        space: str,
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        classes: torch.Tensor | None = None,
        edit: EditArg = None,
    ) -> torch.Tensor:
        """The synthesis input for a code: ws for style models, z for the others.

        ``classes``: resolved long ``[B]`` (``condition``), used by class-conditional mappings.
        ``edit``: edits of mapping layers only (see ``mapping``); they need z codes.
        """
        edits = as_edit_list(edit)
        if edits and space != "z":
            raise AtlasError(
                f"a shift of {edits[0].layer} (the mapping network) acts on z codes; these codes are in {space}"
            )
        if self.num_ws == 0:
            return code
        if space == "z":
            return self.mapping(code, psi=psi, cutoff=cutoff, classes=classes, **({"edit": edits} if edits else {}))
        if space == "w":
            return code.unsqueeze(1).expand(-1, self.num_ws, -1)
        return code

    def decode(
        self,
        code: torch.Tensor,
        space: str = "z",
        *,
        psi: float = 1.0,
        cutoff: int | None = None,
        noise: str = "const",
        edit: EditArg = None,
        noise_generator: torch.Generator | None = None,
        classes=None,
        transform: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images ``[B, C, H, W]`` from codes in ``space``; psi applies only to z codes.

        ``classes`` / ``transform``: see ``Condition`` (defaults: the view's bound values).
        """
        self.check_space(space)
        if isinstance(noise, str) and noise not in NOISE_MODES:
            raise AtlasError(f"unknown noise mode '{noise}'; choose one of {', '.join(NOISE_MODES)}")
        cond = self.condition(code.shape[0], classes=classes, transform=transform, truncation=psi)
        early, edit = self.split_mapping_edits(edit)
        if early:
            # the mapping runs the edited rows: with a shared-prefix source, ws comes back with one
            # row per sample, so the synthesis (and its classes) continue without the source
            _, source = self.checked_edits(early + edit, code.shape[0])
            ws = self.codes_to_ws(code, space, psi=psi, cutoff=cutoff, classes=cond.classes, edit=early)
            if source is not None:
                edit = [ParamEdit(e.layer, e.delta, e.index, e.t) for e in edit]
                if cond.classes is not None:
                    cond = Condition(cond.classes[source], cond.transform, cond.truncation)
        else:
            ws = self.codes_to_ws(code, space, psi=psi, cutoff=cutoff, classes=cond.classes)
        return self.synthesis(ws, noise=noise, edit=edit, noise_generator=noise_generator, cond=cond)

    def split_mapping_edits(self, edit: EditArg) -> tuple[list[ParamEdit], list[ParamEdit]]:
        """``(edits of mapping layers, the others)`` (see ``LayerInfo.mapping``)."""
        edits = as_edit_list(edit)
        if not edits:
            return [], edits
        mapping = {i.name for i in self.mapping_layers()}
        if not mapping:
            return [], edits
        return [e for e in edits if e.layer in mapping], [e for e in edits if e.layer not in mapping]

    def forward(
        self,
        z: torch.Tensor,
        *,
        psi: float = 1.0,
        noise: str = "const",
        edit: EditArg = None,
        classes=None,
    ) -> torch.Tensor:
        return self.decode(z, "z", psi=psi, noise=noise, edit=edit, classes=classes)

    # ---- layers for parameter-space methods ---------------------------------------------
    def editable_layers(self) -> list[LayerInfo]:
        """Layers whose weights parameter-space methods may shift, input to output."""
        return []

    def mapping_layers(self) -> list[LayerInfo]:
        """The editable layers of the mapping network (``LayerInfo.mapping``), input to output."""
        return [i for i in self.editable_layers() if i.mapping]

    def layer_info(self, name: str) -> LayerInfo:
        layers = self.editable_layers()
        for info in layers:
            if info.name == name:
                return info
        raise AtlasError(
            f"model '{self.name}' has no editable layer '{name}'; its layers are " + ", ".join(i.name for i in layers)
        )

    def checked_edits(
        self, edit: EditArg, rows: int, *, mapping: bool | None = None
    ) -> tuple[list[ParamEdit], torch.Tensor | None]:
        """The parameter edits of one ``synthesis`` (or ``mapping``) call, checked: ``(edits, source)``.

        ``rows``: the codes given to the call. Each edit must name an editable layer (else the
        one-line error listing them), its delta must have that layer's weight shape and its index
        and t one entry per sample; all share one ``source`` (``shared_source``), whose indices
        lie in ``[0, rows)``. ``mapping``: ``False`` (a synthesis call) refuses edits of mapping
        layers, ``True`` (a mapping call) any other. Models call this first, whatever their layer loop.
        """
        edits = as_edit_list(edit)
        source = shared_source(edits)
        if not edits:
            return edits, source
        batch = rows if source is None else source.shape[0]
        layers = {i.name: i for i in self.editable_layers()}
        for e in edits:
            info = layers.get(e.layer) or self.layer_info(e.layer)
            if mapping is not None and info.mapping != mapping:
                raise AtlasError(
                    f"edit of layer '{e.layer}': a mapping-network layer acts on z codes (use decode from z)"
                    if info.mapping
                    else f"edit of layer '{e.layer}': not a layer of the mapping network"
                )
            if tuple(e.delta.shape[1:]) != tuple(info.shape):
                raise AtlasError(
                    f"edit of layer '{e.layer}': delta has shape {list(e.delta.shape[1:])}, "
                    f"the layer's weight is {list(info.shape)}"
                )
            if e.index.shape != (batch,) or e.t.shape != (batch,):
                raise AtlasError(f"edit of layer '{e.layer}': index and t must have shape [{batch}] (the batch)")
        if source is not None and (source.min() < 0 or source.max() >= rows):
            raise AtlasError(f"edit source indices must lie in [0, {rows})")
        return edits, source

    def layer_weight(self, name: str) -> torch.Tensor:
        """The weight tensor of an editable layer, in the shape ``LayerInfo.shape`` reports."""
        raise AtlasError(f"model '{self.name}' has no editable layers")

    def uneditable_layers(self) -> list[tuple[str, str, str]]:
        """``(name, type, why)`` for weight-bearing layers the parameter methods cannot edit."""
        return []

    def describe(self) -> dict:
        """A plain-data description of the architecture for ``main.py info`` and the GUI."""
        n_params = sum(p.numel() for p in self.parameters())
        return {
            "name": self.name,
            "source": self.source,
            "identity": self.identity,
            "resolution": self.resolution,
            "img_channels": self.img_channels,
            "z_dim": self.z_dim,
            "w_dim": self.w_dim,
            "num_ws": self.num_ws,
            "family": self.family,
            "spaces": list(self.spaces),
            "num_classes": self.num_classes,
            **({"class_names": self.class_names()} if self.num_classes else {}),
            "capabilities": sorted(self.capabilities),
            "parameters": n_params,
            "editable_layers": [
                {
                    "name": i.name,
                    "kind": i.kind,
                    "shape": list(i.shape),
                    "resolution": i.resolution,
                    **({"mapping": True} if i.mapping else {}),
                }
                for i in self.editable_layers()
            ],
            "default_edit_layer": self.default_edit_layer,
            **(
                {"not_editable": [{"name": n, "type": t, "reason": r} for n, t, r in self.uneditable_layers()]}
                if self.uneditable_layers()
                else {}
            ),
            **({"capability_notes": dict(self.capability_notes)} if self.capability_notes else {}),
        }


def conv_transpose_fn(stride: int, padding: int):
    """``conv(x, weight)`` for a transposed convolution without bias (for ``apply_conv_edit``)."""
    return lambda x, w: F.conv_transpose2d(x, w, stride=stride, padding=padding)
