"""Seeds -> codes in one place (``engine.seeds``): the command line and the editor render the same
image for the same seed, projected images widen the space z -> w -> w+, and the editor's w+ layer
range limits w / w+ directions only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cli.main import main
from engine.checkpoints.atlas import save_stylegan2
from engine.directions import Direction
from engine.errors import AtlasError
from engine.latents import Latent, save_latent
from engine.render import to_uint8
from engine.seeds import acts, applicable, restrict, seed_codes, seed_label, widen_space
from tests.engine.tiny_generators import tiny_biggan, tiny_stylegan2


def test_integer_seeds_follow_nvidias_recipe_in_every_space():
    gen = tiny_stylegan2()
    z = gen.seed_latents([3, 1], psi=0.7)
    codes, bases = seed_codes(gen, [3, 1], "z", psi=0.7)
    assert bases is None and torch.equal(codes, z)
    for space in ("w", "w+"):
        codes, _ = seed_codes(gen, [3, 1], space, psi=0.7)
        with torch.no_grad():
            torch.testing.assert_close(codes, gen.encode(z, space, psi=0.7))
    with pytest.raises(AtlasError, match="no seed given"):
        seed_codes(gen, [], "z")


def test_projected_images_widen_the_space_and_keep_their_rows_and_bases():
    gen = tiny_stylegan2()
    with torch.no_grad():
        w = gen.encode(gen.seed_latents([9]), "w")
    lat = Latent(w, "w", {"name": gen.name}, noise={"synthesis.b4.conv1": torch.ones(1, 4, 4)})
    assert widen_space([1, 2]) == "z" and widen_space([1, lat]) == "w" and widen_space([lat], "w+") == "w+"
    codes, bases = seed_codes(gen, [4, lat, 5], widen_space([4, lat, 5]), psi=1.0)
    assert codes.shape == (3, gen.w_dim) and torch.equal(codes[1], w[0])
    with torch.no_grad():
        torch.testing.assert_close(codes[[0, 2]], gen.encode(gen.seed_latents([4, 5]), "w"))
    assert bases[0] is None and bases[2] is None and set(bases[1].noise) == {"synthesis.b4.conv1"}
    wide, _ = seed_codes(gen, [lat], "w+")
    assert wide.shape == (1, gen.num_ws, gen.w_dim) and torch.equal(wide[0, -1], w[0])
    with pytest.raises(AtlasError, match="projected into w; it can be shown and edited in w or w\\+, not in z"):
        seed_codes(gen, [lat], "z")
    lat.seed_name = "face"
    assert [seed_label(s) for s in (7, lat)] == ["7", "@face"]


def test_classes_ride_with_integer_seeds_and_a_missing_class_is_one_line():
    gen = tiny_biggan()
    codes, bases = seed_codes(gen, [0, 1], "z", classes=2)
    assert [b.class_index for b in bases] == [2, 2]
    _, bases = seed_codes(gen, [0, 1], "z", classes=[3, 1])
    assert [b.class_index for b in bases] == [3, 1]
    with pytest.raises(AtlasError, match="choose a class|class"):
        seed_codes(gen, [0], "z")
    with pytest.raises(AtlasError, match="3 classes for 2 seeds"):
        seed_codes(gen, [0, 1], "z", classes=[0, 1, 2])


def test_the_w_plus_layer_range_limits_w_directions_only():
    v = torch.ones(10)
    w_dir = Direction("latent", space="w", vector=v)
    wp_dir = Direction("latent", space="w+", vector=v, layers=(2, 6))
    z_dir = Direction("latent", space="z", vector=v)
    assert restrict(w_dir, "w+", (1, 4)).layers == (1, 4) and restrict(w_dir, "w+", (1, 4)).space == "w+"
    assert restrict(wp_dir, "w+", (1, 4)).layers == (2, 4)
    assert restrict(wp_dir, "w+", (6, 8)).layers == (0, 0) and not acts(restrict(wp_dir, "w+", (6, 8)))
    assert restrict(w_dir, "w", (1, 4)) is w_dir and restrict(w_dir, "w+", None) is w_dir
    assert restrict(z_dir, "w+", (1, 4)) is z_dir
    assert applicable(z_dir, "z") and not applicable(z_dir, "w") and applicable(w_dir, "w+")


def test_the_command_line_and_the_editor_render_the_same_seed_and_projected_image(tmp_path, capsys):
    from desktop.rendering import PreviewRequest, render_preview, tile
    from engine.latents import load_latent, model_ref
    from engine.models import load_generator

    ckpt = save_stylegan2(tiny_stylegan2(), tmp_path / "g.pt")
    loaded = load_generator(str(ckpt))
    with torch.no_grad():
        w = loaded.encode(loaded.seed_latents([9]), "w")
    lat_path = save_latent(Latent(w, "w", model_ref(loaded)), tmp_path / "face.latent")
    main(
        [
            "render",
            "--model",
            str(ckpt),
            "--seeds",
            "2,5",
            "--space",
            "w",
            "--psi",
            "0.8",
            "--out",
            str(tmp_path / "s.npy"),
        ]
    )
    main(["render", "--model", str(ckpt), "--latent", str(lat_path), "--space", "w+", "--out", str(tmp_path / "l.npy")])
    capsys.readouterr()
    seeds = render_preview(loaded, PreviewRequest(seeds=(2, 5), psi=0.8, space="w"), cache=None)
    cli = to_uint8(torch.from_numpy(np.load(tmp_path / "s.npy")))
    assert np.array_equal(seeds.after, tile(cli))
    image = render_preview(loaded, PreviewRequest(seeds=(load_latent(lat_path, loaded),), space="w+"), cache=None)
    assert np.array_equal(image.after, to_uint8(torch.from_numpy(np.load(tmp_path / "l.npy")))[0])
