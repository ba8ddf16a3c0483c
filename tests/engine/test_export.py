"""Morph videos, grids and batch exports (engine.export) and the ``export`` command."""

from __future__ import annotations

import imageio.v2 as iio
import numpy as np
import pytest
import torch

from engine.directions import DirectionSet, model_ref
from engine.errors import AtlasError
from engine.export import (
    MorphOptions,
    export_grid,
    export_interpretable,
    export_morph,
    make_even,
    morph_shifts,
    render_morph,
    resize,
    tile_row,
)
from engine.jobs import run_job
from engine.models.dcgan import DCGANGenerator
from engine.render import render_batch, to_uint8


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=8, n_up=2).eval()  # 16 x 16 images
    g.name, g.identity = "tiny", "tiny-id"
    return g


@pytest.fixture()
def dset(gen, tmp_path):
    torch.manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(4, gen.z_dim), dim=1)
    s = DirectionSet.latent("test", model_ref(gen), v, range_=(-4.0, 4.0))
    s.directions[1].annotation.interpretable = "yes"
    s.directions[1].annotation.name = "smile / wide"
    s.directions[3].annotation.interpretable = "yes"
    s.directions[2].annotation.interpretable = "unsure"
    s.save(tmp_path / "set.json")
    return s


def test_resize_tile_even():
    img = np.arange(2 * 3 * 5 * 3, dtype=np.uint8).reshape(2, 3, 5, 3)
    big = resize(img, 6, smooth=False)
    assert big.shape == (2, 6, 10, 3)
    assert (big[:, ::2, ::2] == img).all()  # nearest keeps the pixels
    row = tile_row(img, pad=1)
    assert row.shape == (3, 11, 3) and (row[:, 6:] == img[1]).all()
    assert make_even(row).shape == (4, 12, 3)


def test_morph_frames_match_render_batch(gen, dset):
    codes = gen.seed_latents([3, 4])
    opts = MorphOptions(frames=6, size=16, T=2.0, pad=2)
    chunks = []
    job = render_morph(gen, codes, [dset[0]], opts, batch_size=4)
    run_job(job, lambda rec: chunks.append(rec.partial) if rec.partial is not None else None)
    frames = np.concatenate(chunks)
    assert frames.shape == (6, 16, 34, 3)
    # frame 0 is t = -T for both seeds, tiled left to right
    ref = to_uint8(render_batch(gen, codes, [[(dset[0], -2.0)]] * 2))
    assert np.array_equal(frames[0, :, :16], ref[0]) and np.array_equal(frames[0, :, 18:34], ref[1])
    ts = [row[0][1] for row in morph_shifts([dset[0]], 6, 2.0)]
    assert ts[0] == pytest.approx(-2.0) and max(ts) == pytest.approx(2.0)


def test_path_through_several_directions(gen, dset):
    rows = morph_shifts([dset[0], dset[2]], 8)
    assert rows[0] == []  # starts (and loops back) at the unedited image
    peak = rows[4]
    assert {id(d) for d, _ in peak} == {id(dset[0]), id(dset[2])}
    assert all(t == pytest.approx(4.0) for _, t in peak)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_frame_count(gen, dset, tmp_path, suffix):
    out = tmp_path / f"morph{suffix}"
    opts = MorphOptions(frames=20, fps=10, size=33)
    path = run_job(export_morph(gen, gen.seed_latents([0, 1]), [dset[1]], out, opts))
    assert path == out and out.exists()
    frames = [f for f in iio.get_reader(out)]
    assert len(frames) == 20
    assert frames[0].shape[:2] == (34, 70)  # 33 + 4 + 33 = 70 wide, padded to even height 34
    assert not list(tmp_path.glob(".*partial*"))


def test_cancel_removes_partial_file(gen, dset, tmp_path):
    out = tmp_path / "videos" / "cancelled.mp4"
    job = export_morph(gen, gen.seed_latents([0]), [dset[1]], out, MorphOptions(frames=40, size=16), batch_size=4)
    assert run_job(job, lambda rec: rec.step < 8) is None
    assert not out.exists() and not list(out.parent.iterdir())


def test_grid_png(gen, dset, tmp_path):
    out = run_job(
        export_grid(
            gen, gen.seed_latents([0, 1]), [dset[0], dset[1]], [-2, 0, 2], tmp_path / "g.png", size=32, smooth=False
        )
    )
    img = iio.imread(out)
    assert img.shape[:2] == (4 * 34 + 2, 3 * 34 + 2)


def test_batch_exports_interpretable_only(gen, dset, tmp_path):
    opts = MorphOptions(frames=4, size=16)
    paths = run_job(export_interpretable(gen, dset, gen.seed_latents([0]), tmp_path / "batch", fmt="gif", opts=opts))
    assert [p.name for p in paths] == ["001-smile-wide.gif", "003-direction.gif"]
    index = (tmp_path / "batch" / "index.csv").read_text().splitlines()
    assert index[0].startswith("index,name") and index[1].startswith("1,smile / wide")
    for d in dset.directions:
        d.annotation.interpretable = None
    with pytest.raises(AtlasError, match="no direction is marked interpretable"):
        run_job(export_interpretable(gen, dset, gen.seed_latents([0]), tmp_path / "none"))


def test_export_cli(gen, dset, tmp_path, monkeypatch, capsys):
    import cli.cmd_export as cmd
    from cli.main import main

    monkeypatch.setattr(cmd, "load_model_for_set", lambda args, dset, quiet=False: gen)
    set_path = str(dset.path)
    assert (
        main(
            [
                "export",
                "--directions",
                set_path,
                "--index",
                "0",
                "--seeds",
                "0,1",
                "--frames",
                "12",
                "--fps",
                "6",
                "--size",
                "16",
                "--out",
                str(tmp_path / "m.mp4"),
            ]
        )
        == 0
    )
    assert sum(1 for _ in iio.get_reader(tmp_path / "m.mp4")) == 12
    assert (
        main(
            [
                "export",
                "-d",
                set_path,
                "--index",
                "0,2,3",
                "--frames",
                "9",
                "--size",
                "16",
                "--out",
                str(tmp_path / "p.gif"),
            ]
        )
        == 0
    )
    assert len(iio.mimread(tmp_path / "p.gif")) == 9
    assert main(["export", "-d", set_path, "--index", "0-1", "--shifts=-1:1:3", "--out", str(tmp_path / "g.png")]) == 0
    assert iio.imread(tmp_path / "g.png").shape[:2] == (2 * 18 + 2, 3 * 18 + 2)
    assert main(["export", "-d", set_path, "--interpretable", "--format", "png", "--out", str(tmp_path / "b")]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "001-smile-wide.png",
        "003-direction.png",
        "index.csv",
    ]
    assert main(["export", "-d", set_path, "--index", "9", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "out of range" in capsys.readouterr().err


def test_grid_labels(gen, dset, tmp_path):
    """``labels=True`` puts the direction names and seeds left of the rows and the shifts t above
    the columns; the cells themselves are the unlabelled grid, pixel for pixel."""
    kw = dict(size=32, smooth=False)
    codes = gen.seed_latents([0, 1])
    plain = iio.imread(run_job(export_grid(gen, codes, [dset[0], dset[1]], [-2, 0, 2], tmp_path / "p.png", **kw)))
    job = export_grid(
        gen,
        codes,
        [dset[0], dset[1]],
        [-2, 0, 2],
        tmp_path / "l.png",
        labels=True,
        names=["#0", "#1 smile / wide"],
        seed_names=["seed 0", "seed 1"],
        **kw,
    )
    img = iio.imread(run_job(job))
    top, left = img.shape[0] - plain.shape[0], img.shape[1] - plain.shape[1]
    assert top > 8 and left > 40  # room for the texts
    assert np.array_equal(img[top:, left:], plain)
    ink = img.min(axis=2) < 128
    for r in range(4):  # every row (direction x seed) has its label beside it
        assert ink[top + 2 + r * 34 : top + 2 + r * 34 + 32, :left].any()
    for c in range(3):  # every column has its t above it
        assert ink[:top, left + 2 + c * 34 : left + 2 + c * 34 + 32].any()
    assert not ink[:top, left + 34 * 3 + 2 :].any()


def test_export_cli_grid_labels(gen, dset, tmp_path, monkeypatch):
    import cli.cmd_export as cmd
    from cli.main import main

    monkeypatch.setattr(cmd, "load_model_for_set", lambda args, dset, quiet=False: gen)
    args = ["export", "-d", str(dset.path), "--index", "1", "--shifts", "-2:2:3", "--size", "16"]
    assert main([*args, "--out", str(tmp_path / "plain.png")]) == 0
    assert main([*args, "--labels", "--out", str(tmp_path / "labelled.png")]) == 0
    plain, labelled = iio.imread(tmp_path / "plain.png"), iio.imread(tmp_path / "labelled.png")
    assert labelled.shape[0] > plain.shape[0] and labelled.shape[1] > plain.shape[1]
    assert np.array_equal(labelled[-plain.shape[0] :, -plain.shape[1] :], plain)


# ---- every export yields at least once a second (issue 11) -------------------------------------
@pytest.fixture()
def slow_gen(monkeypatch):
    """A 16 px DCGAN that takes 0.15 s per image on the pacers' fake clock."""
    from tests.engine.fake_clock import slow_generator

    clock = slow_generator(monkeypatch, DCGANGenerator, 0.15)
    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=8, n_up=2).eval()
    g.name, g.identity = "tiny", "tiny-id"
    return g, clock


@pytest.mark.parametrize("what", ["images", "grid", "mp4", "gif", "batch"])
def test_every_export_yields_within_a_second_of_a_slow_generator(slow_gen, dset, tmp_path, what):
    """Exports used to render 16 or 32 images per yield (2.4-4.8 s here); now each piece of images
    is sized to yield within a second, and two seeds of a frame may come from two pieces."""
    from engine.render import Item, render_items

    gen, clock = slow_gen
    codes = gen.seed_latents([0, 1, 2])
    dirs = [dset.directions[0], dset.directions[1]]
    opts = MorphOptions(frames=8, size=32)
    job = {
        "images": lambda: render_items(gen, [Item(c) for c in gen.seed_latents(range(20))]),
        "grid": lambda: export_grid(gen, codes, dirs, [-2.0, 0.0, 2.0], tmp_path / "g.png"),
        "mp4": lambda: export_morph(gen, codes, dirs[:1], tmp_path / "m.mp4", opts),
        "gif": lambda: export_morph(gen, codes, dirs[:1], tmp_path / "m.gif", opts),
        "batch": lambda: export_interpretable(gen, dset, codes, tmp_path / "batch", fmt="gif", opts=opts),
    }[what]()
    stamps = []
    run_job(job, lambda rec: stamps.append(clock.now))
    gaps = np.diff([0.0, *stamps, clock.now])
    assert gaps.max() <= 1.0, gaps.max()
    assert clock.images >= 18 and len(stamps) > 5
    if what == "mp4":  # the frames are the unpaced ones: seed 1 of frame 5 is G(z_1 + t_5 d)
        frames = iio.mimread(tmp_path / "m.mp4")
        assert len(frames) == 8 and frames[0].shape == (32, 3 * 32 + 2 * 4, 3)


def test_a_video_cancelled_while_it_is_written_leaves_no_file(gen, dset, tmp_path, monkeypatch):
    """The GIF is encoded on a helper thread while the job yields; cancelled then, the file the
    helper goes on writing is removed when it is done."""
    import threading

    from engine.writers.gif import GifSink

    gate, wrote = threading.Event(), threading.Event()
    real = GifSink.close

    def slow_close(self):
        gate.wait()
        real(self)
        wrote.set()

    monkeypatch.setattr(GifSink, "close", slow_close)
    job = export_morph(gen, gen.seed_latents([0]), [dset.directions[0]], tmp_path / "m.gif", MorphOptions(frames=4))
    assert run_job(job, lambda rec: not rec.message.endswith("writing")) is None  # cancelled while writing
    gate.set()
    assert wrote.wait(10)
    partial = tmp_path / ".m.partial.gif"
    for _ in range(200):  # the helper removes its file right after writing it
        if not partial.exists():
            break
        threading.Event().wait(0.05)
    assert not partial.exists() and not (tmp_path / "m.gif").exists()


def test_a_format_registered_from_outside_is_offered_and_written_by_the_export_command(
    gen, dset, tmp_path, monkeypatch, capsys
):
    """A new export format is one module plus ``register_writer``: ``main.py export`` lists it
    (help, ``--format``), writes grids and morphs with it by ``--out``'s suffix, and in batches."""
    import cli.cmd_export as cmd
    from cli.main import main
    from engine.writers import Writer, register_writer, writer_for
    from tests.engine.toy_writer import TOY_IMAGE, TOY_VIDEO, read_toy

    monkeypatch.setattr(cmd, "load_model_for_set", lambda args, dset, quiet=False: gen)
    set_path = str(dset.path)
    assert main(["export", "--help"]) in (0, None)
    helptext = " ".join(capsys.readouterr().out.split())
    assert f"{TOY_IMAGE} (.toyimg, image)" in helptext and f"{TOY_VIDEO} (.toyvid, video)" in helptext
    grid = tmp_path / "g.toyimg"
    assert main(["export", "-d", set_path, "--index", "0-1", "--shifts=-1:1:3", "--out", str(grid)]) == 0
    png = tmp_path / "g.png"
    assert main(["export", "-d", set_path, "--index", "0-1", "--shifts=-1:1:3", "--out", str(png)]) == 0
    assert np.array_equal(read_toy(grid), iio.imread(png)[..., :3])  # the same pixels, another writer
    video = tmp_path / "m.toyvid"
    args = ["export", "-d", set_path, "--index", "1", "--frames", "5", "--size", "16", "--out"]
    assert main([*args, str(video)]) == 0
    frames = read_toy(video)
    assert frames.shape == (5, 16, 16, 3)
    ref = to_uint8(render_batch(gen, gen.seed_latents([0]), [[(dset[1], -4.0)]]))
    assert np.array_equal(frames[0], ref[0])  # frame 0 of the sweep is t = -T
    batch = tmp_path / "batch"
    assert (
        main(["export", "-d", set_path, "--interpretable", "--format", TOY_VIDEO, "--frames", "4", "--out", str(batch)])
        == 0
    )
    assert sorted(p.name for p in batch.iterdir()) == ["001-smile-wide.toyvid", "003-direction.toyvid", "index.csv"]
    capsys.readouterr()
    assert main(["export", "-d", set_path, "--out", str(tmp_path / "x.toyzzz")]) == 2
    err = capsys.readouterr().err
    assert ".toyvid" in err and ".toyimg" in err  # the refusal lists the registered suffixes
    with pytest.raises(AtlasError, match="an image file must end with one of .png, .jpg, .jpeg, .toyimg"):
        writer_for("a.mp4", "image")
    with pytest.raises(ValueError, match="suffix .png is already written by 'png'"):
        register_writer(Writer("png2", (".png",), "image", "another PNG", save=lambda image, path: None))
