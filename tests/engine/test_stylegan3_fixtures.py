"""Our StyleGAN3 (T and R) against the outputs NVIDIA's stylegan3 code computed from its own snapshots.

The fixtures (``../shared/fixtures/stylegan3``, see its README) are two small snapshots written by
NVlabs/stylegan3 with their ws and images for fixed z: psi 1, psi 0.7, psi 0.7 with a cutoff,
style mixing, and an input transform set the way ``gen_images.py`` sets it. Everything is compared
at atol 1e-4 (ws to float rounding), through the Python API and through ``main.py render``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from engine.models import load_generator
from engine.models.base import INPUT_TRANSFORM, MAPPING, SHARED_PREFIX, STYLE_AFFINES, ParamEdit, input_transform
from engine.models.stylegan3 import StyleGAN3Config, design_lowpass_filter

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "stylegan3"
ATOL = 1e-4
NAMES = ["sg3t_res32", "sg3r_res32"]

pytestmark = pytest.mark.skipif(
    not (FIXTURES / "manifest.json").is_file(), reason=f"StyleGAN3 reference fixtures not found at {FIXTURES}"
)

_CACHE: dict[str, object] = {}


def load(name: str):
    if name not in _CACHE:
        _CACHE[name] = load_generator(str(FIXTURES / f"{name}.pkl"), device="cpu")
    return _CACHE[name]


def expected(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}_expected.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def max_err(a: torch.Tensor, b: np.ndarray) -> float:
    assert tuple(a.shape) == b.shape, (tuple(a.shape), b.shape)
    return float((a.detach().double() - torch.from_numpy(b).double()).abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_fixture_matches_reference(name):
    g, e = load(name), expected(name)
    assert g.family == "stylegan3" and g.num_ws == e["ws_psi1"].shape[1]
    assert {MAPPING, STYLE_AFFINES, INPUT_TRANSFORM, SHARED_PREFIX} <= g.capabilities
    z, z2 = torch.from_numpy(e["z"]), torch.from_numpy(e["mix_z2"])
    psi, cut, k = float(e["psi"]), int(e["truncation_cutoff"]), int(e["mix_index"])
    assert np.array_equal(g.w_avg.numpy(), e["w_avg"])
    with torch.no_grad():
        ws1 = g.mapping(z)
        ws_errs = {
            "w": max_err(ws1[:, 0], e["w"]),
            "ws_psi1": max_err(ws1, e["ws_psi1"]),
            "ws_psi07": max_err(g.mapping(z, psi=psi), e["ws_psi07"]),
            "ws_psi07_cutoff": max_err(g.mapping(z, psi=psi, cutoff=cut), e["ws_psi07_cutoff"]),
            "ws_mix": max_err(g.mix(z, z2, k), e["ws_mix"]),
        }
        assert max(ws_errs.values()) <= 1e-6, ws_errs
        errs = {"input_psi1_row0": max_err(g.synthesis_net.input(ws1[:, 0])[:1], e["input_psi1_row0"])}
        for fused in (False, True):  # activations scaled around one conv, and per-sample grouped weights
            g.fused_modconv = fused
            try:
                errs[f"img_psi1/{fused}"] = max_err(g.synthesis(ws1, noise="const"), e["img_psi1"])
                errs[f"img_psi07/{fused}"] = max_err(g.decode(z, "z", psi=psi), e["img_psi07"])
                errs[f"img_psi07_cutoff/{fused}"] = max_err(g.decode(z, psi=psi, cutoff=cut), e["img_psi07_cutoff"])
                errs[f"img_mix/{fused}"] = max_err(g.synthesis(g.mix(z, z2, k)), e["img_mix"])
                errs[f"img_transform/{fused}"] = max_err(
                    g.decode(z, transform=torch.from_numpy(e["transform"])), e["img_transform"]
                )
            finally:
                g.fused_modconv = None
    assert max(errs.values()) < ATOL, errs


@pytest.mark.parametrize("name", NAMES)
def test_transform_means_gen_images_make_transform(name):
    g, e = load(name), expected(name)
    T = input_transform(float(e["transform_angle_deg"]), tuple(e["transform_translate"]))
    assert np.array_equal(T.numpy(), e["transform"])  # exactly the float32 buffer gen_images writes
    assert np.allclose(np.linalg.inv(T.double().numpy()), e["transform_forward"], atol=1e-6)
    z = torch.from_numpy(e["z"])
    with torch.no_grad():
        assert max_err(g.decode(z, transform=T), e["img_transform"]) < ATOL
        # a view bound to the transform, and an explicit one overriding the view
        view = g.conditioned(transform=T)
        assert max_err(view.decode(z), e["img_transform"]) < ATOL
        assert max_err(view.decode(z, transform=torch.eye(3)), e["img_psi1"]) < ATOL
        # the controls the README lists: identity, and the forward matrix copied without inverting
        assert max_err(g.decode(z), e["img_transform"]) > 0.1
        assert max_err(g.decode(z, transform=torch.from_numpy(e["transform_forward"])), e["img_transform"]) > 0.1
    assert str(g.synthesis_net.input.transform.tolist()) == str(torch.eye(3).tolist())  # nothing stored changed


@pytest.mark.parametrize("name", NAMES)
def test_rows_render_as_they_render_alone(name):
    """Each sample's styles are normalised by its own RMS (see engine/models/stylegan3.py): a row
    alone gives the reference's batch-of-4 image, and scaling another row's styles changes nothing."""
    g, e = load(name), expected(name)
    z = torch.from_numpy(e["z"])
    with torch.no_grad():
        ws = g.mapping(z)
        alone = torch.cat([g.synthesis(ws[i : i + 1]) for i in range(z.shape[0])])
        assert max_err(alone, e["img_psi1"]) < ATOL
        # rows 1..3 moved far away: a batch-wide style RMS would change row 0
        far = ws.clone()
        far[1:] = far[1:] * 30
        assert float((g.synthesis(far)[0] - g.synthesis(ws)[0]).abs().max()) < 2e-5


@pytest.mark.parametrize("name", NAMES)
def test_layer_plan_and_filters_are_what_the_reference_derives(name):
    """``StyleGAN3Config.standard`` with train.py's kwargs rebuilds the stored plan; our filter
    design rebuilds the stored filters."""
    g = load(name)
    kw = json.loads((FIXTURES / "manifest.json").read_text())["fixtures"][name]["G_init_kwargs"]
    cfg = StyleGAN3Config.standard(
        kw["img_resolution"],
        z_dim=kw["z_dim"],
        w_dim=kw["w_dim"],
        channel_base=kw["channel_base"],
        channel_max=kw["channel_max"],
        conv_kernel=kw.get("conv_kernel", 3),
        use_radial_filters=kw.get("use_radial_filters", False),
        magnitude_ema_beta=kw["magnitude_ema_beta"],
    )
    assert cfg.layers == g.config.layers
    assert (cfg.input_size, cfg.input_channels, cfg.input_bandwidth) == (
        g.config.input_size,
        g.config.input_channels,
        g.config.input_bandwidth,
    )
    assert g.config.variant == ("R" if kw.get("use_radial_filters") else "T")
    for spec in g.config.layers:
        m = g.layer_module(f"synthesis.{spec.name}")
        fs = spec.tmp_sampling_rate
        want_up = design_lowpass_filter(spec.up_taps, spec.in_cutoff, spec.in_half_width * 2, fs)
        want_down = design_lowpass_filter(
            spec.down_taps, spec.out_cutoff, spec.out_half_width * 2, fs, spec.down_radial
        )
        for want, got in ((want_up, m.up_filter), (want_down, m.down_filter)):
            assert (want is None) == (got is None)
            if want is not None:
                assert want.shape == got.shape and float((want - got).abs().max()) < 1e-7


@pytest.mark.parametrize("name", NAMES)
def test_cli_render_matches_reference(name, tmp_path):
    e = expected(name)
    z = tmp_path / "z.npy"
    np.save(z, e["z"])
    model = str(FIXTURES / f"{name}.pkl")
    runs = {
        "img_psi1": [],
        "img_psi07": ["--truncation", "0.7"],
        "img_transform": ["--rotate", "10", "--translate", "0.1,-0.05"],
    }
    for key, extra in runs.items():
        out = tmp_path / f"{key}.npy"
        args = ["render", "--model", model, "--latents", str(z), *extra, "--noise", "const", "--out", str(out)]
        assert main([*args, "--device", "cpu", "--threads", "1"]) == 0
        assert np.abs(np.load(out) - e[key]).max() < ATOL, key


def test_cli_refuses_a_transform_on_models_without_one(tmp_path, capsys, shared_fixtures):
    out = tmp_path / "x.png"
    sg2 = str(shared_fixtures / "nvada_skip_res32.pkl")
    assert main(["render", "--model", sg2, "--seeds", "0", "--rotate", "5", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no input transform" in err[0] and not out.exists()
    sg3 = str(FIXTURES / "sg3t_res32.pkl")
    for bad in ("0.1", "a,b", "nan,0"):
        assert main(["render", "--model", sg3, "--seeds", "0", "--translate", bad, "--out", str(out)]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--translate" in err[0]


def test_info_describes_the_stylegan3_model(capsys):
    assert main(["info", str(FIXTURES / "sg3r_res32.pkl")]) == 0
    out = capsys.readouterr().out
    for text in ("stylegan3", "StyleGAN3-R", "nvidia-stylegan3", "--rotate", "radial_filters", "L0_36_64 .. L11_52_38"):
        assert text in out, text
    assert "synthesis.L14_32_3" in out and "torgb" in out and "reads ws[15]" in out
    assert main(["info", str(FIXTURES / "sg3t_res32.pkl"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["family"] == "stylegan3" and d["variant"].startswith("StyleGAN3-T") and d["num_ws"] == 16
    assert d["stored_input_transform"] == "identity" and d["conv_kernel"] == [3]
    layers = d["editable_layers"]
    mapping = [layer for layer in layers if layer.get("mapping")]
    assert [layer["name"] for layer in mapping] == ["mapping.fc0", "mapping.fc1"]
    assert [layer["reads"] for layer in mapping] == ["z", "mapping.fc0"] and mapping[0]["kind"] == "linear"
    assert [layer["ws_index"] for layer in layers[len(mapping) :]] == list(range(1, 16))


@pytest.mark.parametrize("name", NAMES)
def test_parameter_edits_shift_the_stored_weight(name):
    """``ParamEdit`` on a modulated conv (and the toRGB) equals rendering with the weight changed,
    in the plain and the shared-prefix form."""
    g, e = load(name), expected(name)
    z = torch.from_numpy(e["z"][:2])
    layers = [g.default_edit_layer, g.editable_layers()[-1].name]
    assert g.layer_info(layers[1]).kind == "torgb"
    gen = torch.Generator().manual_seed(0)
    for layer in layers:
        W = g.layer_weight(layer)
        delta = torch.randn(W.shape, generator=gen) * W.norm() / W.numel() ** 0.5
        with torch.no_grad():
            ws = g.mapping(z)
            edited = g.synthesis(ws, edit=ParamEdit.single(layer, delta, 2, 0.3))
            saved = W.detach().clone()
            try:
                W.add_(0.3 * delta)
                want = g.synthesis(ws)
            finally:
                W.copy_(saved)
            assert float((edited - want).abs().max()) < 1e-5
            # shared prefix: two codes, four rows (t = 0 and t = 0.3 each)
            source = torch.tensor([0, 1, 0, 1])
            t = torch.tensor([0.0, 0.0, 0.3, 0.3])
            shared = g.synthesis(ws, edit=ParamEdit(layer, delta[None], torch.zeros(4, dtype=torch.long), t, source))
            assert float((shared[2:] - want).abs().max()) < 1e-5
            assert float((shared[:2] - g.synthesis(ws)).abs().max()) < 1e-5


def test_style_affines_leave_out_the_input_and_sefa_leaves_out_torgb():
    from engine.discovery.sefa import style_matrix

    g = load("sg3t_res32")
    aff = g.style_affines()
    assert [idx for _, idx, _ in aff] == list(range(1, 16))  # ws[0] drives the input transform, not a style
    assert all(A.shape == (g.layer_weight(n).shape[1], g.w_dim) for n, _, A in aff)
    A = style_matrix(g, None)
    assert A.shape[0] == sum(A_.shape[0] for n, _, A_ in aff if g.layer_info(n).kind != "torgb")
    assert style_matrix(g, None, torgb=True).shape[0] == A.shape[0] + 16


def test_hostile_module_src_is_never_executed(tmp_path):
    """The stored network source replaced by code that would create a file: loads, renders the same."""
    from tests.hostile_files import source_replaced_pkl

    sentinel, path = tmp_path / "SENTINEL", tmp_path / "src.pkl"
    assert (
        source_replaced_pkl(FIXTURES / "sg3t_res32.pkl", path, sentinel) >= 3
    )  # networks_stylegan3.py, networks_stylegan2.py (D), augment.py
    g = load_generator(str(path), device="cpu")
    assert not sentinel.exists()
    e = expected("sg3t_res32")
    with torch.no_grad():
        assert max_err(g.decode(torch.from_numpy(e["z"])), e["img_psi1"]) < ATOL


def test_export_takes_the_transform(tmp_path, capsys, shared_fixtures):
    """``export`` grids (engine and CLI) use one transform for every cell; SG2 refuses the flags."""
    import imageio.v2 as iio

    from engine.directions import DirectionSet, model_ref
    from engine.export import export_grid
    from engine.jobs import run_job
    from engine.render import grid_image, materialize, render_grid

    g = load("sg3t_res32")
    v = torch.nn.functional.normalize(torch.randn(2, g.w_dim, generator=torch.Generator().manual_seed(0)), dim=1)
    dset = DirectionSet.latent("test", model_ref(g), v, space="w", range_=(-4.0, 4.0))
    dset.save(tmp_path / "w.json")
    T = input_transform(30.0, (0.0, 0.1))
    z = g.seed_latents([0])
    dirs = [materialize(dset, 0)]
    shifts = [-4.0, 0.0, 4.0]
    path = run_job(export_grid(g, z, dirs, shifts, tmp_path / "grid.png", transform=T))
    want = grid_image(run_job(render_grid(g, z, dirs, shifts, transform=T)))
    assert np.array_equal(iio.imread(path)[..., :3], want)
    plain = grid_image(run_job(render_grid(g, z, dirs, shifts)))
    assert not np.array_equal(plain, want)

    model = str(FIXTURES / "sg3t_res32.pkl")
    common = ["export", "--model", model, "--directions", str(dset.path), "--index", "0", "--shifts", "-4:4:3"]
    out = tmp_path / "cli.png"
    assert main([*common, "--rotate", "30", "--translate", "0,0.1", "--out", str(out), "--threads", "1"]) == 0
    assert np.array_equal(iio.imread(out)[..., :3], want)
    sg2 = str(shared_fixtures / "nvada_skip_res32.pkl")
    bad = ["export", "--model", sg2, "--directions", str(dset.path), "--out", str(tmp_path / "x.png")]
    capsys.readouterr()
    assert main([*bad, "--translate", "0.1,0"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no input transform" in err[0]
