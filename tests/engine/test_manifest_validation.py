"""Direction sets and ``.latent`` files: every manifest field is checked against the tensors at load
time (issue 11), so that what loads renders, and what does not is one ``AtlasError`` naming the file."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from engine.analysis.sampling import check_fits
from engine.directions import DirectionSet
from engine.errors import AtlasError, DirectionSetError
from engine.latents import FORMAT as LATENT_FORMAT
from engine.latents import Latent, LatentFileError, load_latent, save_latent
from engine.render import materialize, render_batch
from tests.engine.test_directions import make_set
from tests.engine.tiny_generators import tiny_stylegan2

# ---- direction sets ---------------------------------------------------------------------------------


def _edit_set(path, manifest=None, tensors=None):
    """Rewrite a saved set: ``manifest(man)`` edits the JSON, ``tensors(dict)`` the tensors (with a
    matching sha256, as a careful attacker or a buggy tool would write it)."""
    man = json.loads(path.read_text())
    if tensors is not None:
        tfile = path.with_name(man["tensors"]["file"])
        data = dict(st_load(tfile.read_bytes()))
        tensors(data)
        blob = st_save(data)
        tfile.write_bytes(blob)
        man["tensors"]["sha256"] = hashlib.sha256(blob).hexdigest()
    if manifest is not None:
        manifest(man)
    path.write_text(json.dumps(man))
    return path


def _set_refused(path, match):
    with pytest.raises(DirectionSetError, match=match) as info:
        DirectionSet.load(path)
    msg = str(info.value)
    assert path.name in msg or path.stem in msg, msg
    assert "\n" not in msg


def _set(tmp_path):
    return make_set().save(tmp_path / "set.json")


def test_basis_shape_that_does_not_fit_its_tensors(tmp_path):
    """Was a reshape at render time (a 1.1 GB one for a large declared shape)."""
    path = _edit_set(_set(tmp_path), lambda m: m["bases"]["svd"].update(shape=[60000, 4, 3, 3]))
    _set_refused(path, r"do not form a svd basis of shape \[60000, 4, 3, 3\]")


def test_one_element_range(tmp_path):
    path = _edit_set(_set(tmp_path), lambda m: m["directions"][0].update(range=[1.0]))
    _set_refused(path, "direction 0: range must be")


@pytest.mark.parametrize("rng", [[3, -3], [0, float("nan")], [-1e300, 1], ["a", 1], [True, 2]])
def test_ranges_must_be_finite_and_increasing(tmp_path, rng):
    path = _edit_set(_set(tmp_path), lambda m: m["directions"][1].update(range=rng))
    _set_refused(path, "direction 1: range must be")


def test_tensor_file_name_too_long(tmp_path):
    path = _edit_set(_set(tmp_path), lambda m: m["tensors"].update(file="x" * 300 + ".safetensors"))
    _set_refused(path, "names no tensor file in its folder")


def test_layer_as_a_dict(tmp_path):
    """Was ``unhashable type: 'dict'`` when rendering."""
    path = _edit_set(_set(tmp_path), lambda m: m["directions"][3].update(layer={"a": 1}))
    _set_refused(path, "direction 3: layer must be text")


def test_missing_basis_tensor_with_a_matching_hash(tmp_path):
    """Was ``KeyError: 'V'`` when rendering."""
    path = _edit_set(_set(tmp_path), tensors=lambda t: t.pop("basis.svd.V"))
    _set_refused(path, "basis 'svd': its tensors V are missing")


def test_integer_tensors_with_a_matching_hash(tmp_path):
    """Was a dtype mismatch when rendering."""
    path = _edit_set(_set(tmp_path), tensors=lambda t: t.update({"basis.svd.S": t["basis.svd.S"].to(torch.int32)}))
    _set_refused(path, "basis.svd.S' is a 1-d int32 tensor")


def test_half_precision_tensors_load_as_float32(tmp_path):
    path = _edit_set(_set(tmp_path), tensors=lambda t: t.update({"dir.0.vector": t["dir.0.vector"].half()}))
    assert DirectionSet.load(path).directions[0].vector.dtype == torch.float32


def test_non_finite_vector(tmp_path):
    def nan(t):
        t["dir.0.vector"][2] = float("nan")

    _set_refused(_edit_set(_set(tmp_path), tensors=nan), "NaN or infinite")


def test_w_plus_layers_beyond_the_vector(tmp_path):
    """A 2-d w+ vector and layers past its rows: was a broadcast error when rendering."""

    def two_d(t):
        t["dir.1.vector"] = torch.randn(4, 16)

    path = _edit_set(_set(tmp_path), lambda m: m["directions"][1].update(layers=[2, 9]), two_d)
    _set_refused(path, r"direction 1: layers must be \[start, stop\) with 0 <= start <= stop <= 4")


def test_a_two_dimensional_z_direction(tmp_path):
    path = _edit_set(_set(tmp_path), tensors=lambda t: t.update({"dir.0.vector": torch.randn(2, 8)}))
    _set_refused(path, r"a z direction of shape \[2, 8\]")


def test_latent_sizes_disagree_with_each_other_or_the_model(tmp_path):
    path = _edit_set(_set(tmp_path), lambda m: m["model"].update(z_dim=9))
    _set_refused(path, "direction 0 has 8 components but the model's z_dim has 9")


def test_coefficients_that_do_not_fit_the_rank(tmp_path):
    path = _edit_set(_set(tmp_path), tensors=lambda t: t.update({"dir.2.vector": torch.randn(5)}))
    _set_refused(path, "do not fit basis 'svd' \\(rank 6")


def test_tensors_the_manifest_does_not_describe(tmp_path):
    path = _edit_set(_set(tmp_path), tensors=lambda t: t.update({"dir.9.vector": torch.randn(8)}))
    _set_refused(path, "holds tensors its manifest does not describe")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m["directions"][0]["annotation"].update(name=["x"]), "annotation: name must be text"),
        (lambda m: m["directions"][0]["annotation"].update(tags="face"), "tags must be a list"),
        (lambda m: m["directions"][0]["annotation"].update(rating=True), "rating must be an integer"),
        (lambda m: m["directions"][0]["annotation"].update(color="red; x: y"), "color must be"),
        (lambda m: m.update(metrics=[1, 2]), "metrics must be a JSON object"),
        (lambda m: m.update(model="abc"), "model must be a JSON object"),
        (lambda m: m["model"].update(identity=7), "model: identity must be text"),
        (lambda m: m.update(directions={"0": 1}), "directions must be a list"),
        (lambda m: m["directions"][0].update(kind=["latent"]), "kind must be text"),
        (lambda m: m["directions"][0].update(space=None), "space is required"),
        (lambda m: m["directions"][0].update(info=[1]), "info must be a JSON object"),
        (lambda m: m["directions"][0].update(score="high"), "score must be a number"),
        (lambda m: m["bases"]["svd"].update(weight_norm=-1), "weight_norm must be a finite number"),
        (lambda m: m.update(method=None), "method is required"),
        (lambda m: m["directions"][0].update(score=10**400), "score must be a number"),
        (lambda m: m["directions"][0].update(range=[0, 10**400]), "range must be"),
        (lambda m: m["bases"]["svd"].update(weight_norm=10**400), "weight_norm must be a finite number"),
    ],
)
def test_manifest_fields_of_the_wrong_type(tmp_path, edit, match):
    _set_refused(_edit_set(_set(tmp_path), edit), match)


def test_deeply_nested_or_huge_json(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    _set_refused(deep, "not JSON")
    huge = tmp_path / "huge.json"
    huge.write_text('{"format": "gan-atlas-directions", "version": ' + "9" * 5000 + "}")
    _set_refused(huge, "not JSON")


def test_a_loaded_set_renders_on_a_model_it_fits(tmp_path):
    """What loads and fits renders: every direction of a set saved for a tiny StyleGAN2."""
    gen = tiny_stylegan2()
    layer = [i for i in gen.editable_layers() if not i.mapping][2]  # a synthesis layer
    W = gen.layer_weight(layer.name).detach()
    U, S, Vh = torch.linalg.svd(W.reshape(W.shape[0], -1), full_matrices=False)
    from engine.directions import Direction, ParamBasis

    ds = DirectionSet(
        "test",
        {"name": gen.name, "identity": gen.identity, "z_dim": gen.z_dim},
        [
            Direction("latent", vector=torch.randn(gen.z_dim), space="z"),
            Direction("latent", vector=torch.randn(gen.w_dim), space="w+", layers=(1, 3)),
            Direction("param", vector=torch.eye(S.numel())[0], layer=layer.name, basis="b"),
        ],
        bases={"b": ParamBasis(layer.name, "svd", tuple(W.shape), float(W.norm()), {"U": U, "S": S, "V": Vh.T})},
    )
    back = DirectionSet.load(ds.save(tmp_path / "tiny.json"))
    check_fits(gen, back)
    shifts = [[(materialize(back, k), 1.0)] for k in range(len(back))]
    with torch.no_grad():
        img = render_batch(gen, gen.seed_latents([1, 2, 3]), shifts)
    assert img.shape[0] == 3 and torch.isfinite(img).all()


def test_a_w_plus_direction_past_the_models_layers_is_an_atlas_error():
    gen = tiny_stylegan2()
    from engine.directions import Direction

    d = Direction("latent", vector=torch.randn(gen.w_dim), space="w+", layers=(2, gen.num_ws + 3))
    with pytest.raises(AtlasError, match="does not fit this model's"):
        render_batch(gen, gen.seed_latents([1]), [[(d, 1.0)]])


# ---- .latent files ----------------------------------------------------------------------------------


def _latent(gen, tuned: bool = True) -> Latent:
    torch.manual_seed(0)
    noise = {name: torch.randn(1, *m.shape) for name, m in gen.noise_maps().items()}
    layer = [i for i in gen.editable_layers() if not i.mapping][1]  # a synthesis layer
    tuning = {layer.name: 0.01 * torch.randn(layer.shape)} if tuned else {}
    return Latent(
        torch.randn(1, gen.w_dim), "w", {"name": gen.name, "identity": gen.identity}, noise=noise, tuning=tuning
    )


def _edit_latent(path, manifest=None, tensors=None, checksum: bool = False):
    """Rewrite a ``.latent``'s manifest and tensors (keeping the stored checksum unless ``checksum``)."""
    from engine.latents import _META_KEY, tensors_digest

    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    man = json.loads(json.loads(data[8 : 8 + n])["__metadata__"][_META_KEY])
    raw = dict(st_load(data))
    if tensors is not None:
        tensors(raw)
    if checksum:
        man["tensors_sha256"] = tensors_digest(raw)
    if manifest is not None:
        manifest(man)
    path.write_bytes(st_save(raw, metadata={_META_KEY: json.dumps(man)}))
    return path


def _latent_refused(path, gen, match):
    with pytest.raises(LatentFileError, match=match) as info:
        load_latent(path, gen)
    assert path.name in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def saved_latent(tmp_path):
    gen = tiny_stylegan2()
    return gen, save_latent(_latent(gen), tmp_path / "photo.latent")


def test_latent_round_trip_with_checksum(saved_latent):
    gen, path = saved_latent
    lat = load_latent(path, gen)
    with torch.no_grad():
        img = render_batch(gen, lat.codes_in(gen, "w"), space="w", bases=lat.bases())
    assert torch.isfinite(img).all()


def test_latent_tensors_that_do_not_match_their_checksum(saved_latent):
    gen, path = saved_latent

    def bump(t):
        t["code"] = t["code"] + 1

    _latent_refused(_edit_latent(path, tensors=bump), gen, "do not match their checksum")


def test_a_latent_without_a_checksum_still_loads(saved_latent):
    gen, path = saved_latent
    load_latent(_edit_latent(path, manifest=lambda m: m.pop("tensors_sha256")), gen)


def test_integer_latent_code(saved_latent):
    """Was an int dtype reaching the renderer."""
    gen, path = saved_latent
    path = _edit_latent(
        path, tensors=lambda t: t.update(code=torch.ones(1, gen.w_dim, dtype=torch.int64)), checksum=True
    )
    _latent_refused(path, gen, "code is a 2-d int64 tensor")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda m: m.update(metrics=[1, 2]), "metrics must be a JSON object"),
        (lambda m: m.update(model="abc"), "model must be a JSON object"),
        (lambda m: m["model"].update(identity=["x"]), "identity must be text"),
        (lambda m: m.update(image=7), "image must be a JSON object"),
        (lambda m: m.update(space=["w"]), "space must be text"),
        (lambda m: m.update(version=0), "version must be an integer"),
        (lambda m: m.update(tuning=[]), "tuning must be a JSON object"),
        (lambda m: m["tuning"].update(layers="x"), "layers must be a list"),
        (lambda m: m["tuning"].update(layers=[]), "holds other layers"),
        (lambda m: m["tuning"].update(file="../x.safetensors"), "must lie beside it"),
        (lambda m: m["tuning"].update(sha256=None), "sha256 differs"),
        (lambda m: m.update(tensors_sha256="xyz"), "tensors_sha256 must be 64"),
    ],
)
def test_latent_manifest_fields_of_the_wrong_type(saved_latent, edit, match):
    gen, path = saved_latent
    _latent_refused(_edit_latent(path, manifest=edit), gen, match)


def test_latent_noise_map_rows_and_values(saved_latent):
    gen, path = saved_latent
    name = next(iter(gen.noise_maps()))

    def rows(t):
        t[f"noise/{name}"] = torch.cat([t[f"noise/{name}"]] * 2)

    _latent_refused(_edit_latent(path, tensors=rows, checksum=True), gen, "is not 1 x R x R")

    def nan(t):
        t["code"][0, 0] = float("inf")

    _latent_refused(_edit_latent(path, tensors=nan, checksum=True), gen, "NaN or infinite")


def test_latent_with_a_tensor_it_does_not_describe(saved_latent):
    gen, path = saved_latent
    path = _edit_latent(path, tensors=lambda t: t.update(extra=torch.zeros(2)), checksum=True)
    _latent_refused(path, gen, "damaged manifest")


def test_latent_format_name_is_kept(saved_latent):
    gen, path = saved_latent
    _latent_refused(_edit_latent(path, manifest=lambda m: m.update(format={"a": 1})), gen, "not a GAN Atlas latent")
    assert LATENT_FORMAT == "gan-atlas-latent"
