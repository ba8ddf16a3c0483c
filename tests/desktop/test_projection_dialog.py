"""Open image…: project a photo on a worker, use it as the seed @name in preview, grid and exports."""

from __future__ import annotations

import imageio.v2 as iio
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from desktop.rendering import GridRequest, render_grid_rows
from desktop.workspace import Workspace
from engine.projection import render_latent


@pytest.fixture()
def photo(tmp_path):
    y, x = np.mgrid[0:48, 0:80]
    a = np.stack([(x * 3) % 256, (y * 5) % 256, np.full_like(x, 120)], -1).astype(np.uint8)
    path = tmp_path / "my photo.png"
    Image.fromarray(a).save(path)
    return path


def test_project_a_photo_and_use_it_as_a_seed(qtbot, make_window, dirset, photo, tmp_path):
    win = make_window([dirset.path])
    qtbot.waitUntil(lambda: len(win.ws.entries) == 1, timeout=10000)
    dlg = win.open_image_dialog(str(photo))
    qtbot.waitUntil(lambda: dlg.photo.array() is not None, timeout=10000)  # read on a worker
    assert dlg.photo.array().shape == (16, 16, 3)
    assert "80×48 px" in dlg.status.text()
    dlg.steps.setValue(25)
    dlg.distance.setCurrentText("pixel")
    dlg.tune.setChecked(True)
    dlg.tune_steps.setValue(5)
    with qtbot.waitSignal(dlg.runner.stopped, timeout=60000):
        qtbot.mouseClick(dlg.start_btn, Qt.MouseButton.LeftButton)
    lat = dlg.latent
    assert lat is not None and lat.tuned
    assert "PSNR" in dlg.status.text() and "after tuning" in dlg.status.text()
    assert np.array_equal(dlg.recon.array(), render_latent(win.ws.gen, lat)[0])
    with qtbot.waitSignal(dlg.saved, timeout=20000) as blocker:
        dlg.save(tmp_path / "face.latent")
    saved = blocker.args[0]
    assert saved == tmp_path / "face.latent" and saved.exists()

    qtbot.mouseClick(dlg.use_btn, Qt.MouseButton.LeftButton)
    assert win.preview.seeds.text() == "@face" and win.ws.images["face"] is lat  # named after its file
    qtbot.waitUntil(
        lambda: (
            win.preview.result is not None and "@face" in win.preview.canvas.caption and not win.preview.renderer.busy
        ),
        timeout=10000,
    )
    assert np.array_equal(win.preview.image(), render_latent(win.ws.gen, lat)[0])

    # a direction shifts the projected image like any seed; before/after keeps the reconstruction
    entry = win.ws.entries[0]
    win.ws.select(entry, 0)
    win.ws.set_shift(entry, 0, 4.0)
    qtbot.waitUntil(lambda: not win.preview.renderer.busy and bool(win.preview.current_request().shifts), timeout=10000)
    qtbot.waitUntil(lambda: not np.array_equal(win.preview.result.after, win.preview.result.before), timeout=10000)
    assert np.array_equal(win.preview.result.before, render_latent(win.ws.gen, lat)[0])

    # mixed with integer seeds in the seed field
    win.preview.seeds.setText("@face,3")
    assert [type(s).__name__ for s in win.preview.seed_values()] == ["Latent", "int"]

    # the grid renders it (t = 0 column is the reconstruction)
    req = GridRequest(dset=entry.dset, rows=(0,), shifts=((-2.0, 0.0, 2.0),), seeds=(lat, 0), thumb=16)
    _, rows = render_grid_rows(win.ws.gen, req)
    assert rows[0].shape == (3, 2, 16, 16, 3)
    assert np.array_equal(rows[0][1, 0], render_latent(win.ws.gen, lat)[0])
    assert not np.array_equal(rows[0][0, 0], rows[0][1, 0])

    # and the export dialog takes it as a seed
    out = tmp_path / "edit.gif"
    exp = win.export_dialog("video")
    exp.video_out.setText(str(out))
    exp.video_seeds.setText("@face")
    exp.frames.setValue(6)
    exp.video_size.setValue(16)
    with qtbot.waitSignal(exp.runner.stopped, timeout=60000):
        exp.export_btn.click()
    assert exp.result == out
    frames = iio.mimread(out)
    assert len(frames) == 6 and frames[0].shape[:2] == (16, 16)


def test_cancel_and_bad_files(qtbot, make_window, photo, tmp_path):
    win = make_window()
    dlg = win.open_image_dialog(str(photo))
    dlg.steps.setValue(10000)
    dlg.distance.setCurrentText("pixel")
    dlg.start()
    qtbot.waitUntil(lambda: dlg.bar.value() > 3, timeout=20000)
    assert not dlg.start_btn.isEnabled() and dlg.cancel_btn.isEnabled()
    with qtbot.waitSignal(dlg.runner.stopped, timeout=20000):
        qtbot.mouseClick(dlg.cancel_btn, Qt.MouseButton.LeftButton)
    assert dlg.latent is None and "cancelled" in dlg.status.text()
    assert dlg.start_btn.isEnabled() and not dlg.use_btn.isEnabled()
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    dlg.path.setText(str(bad))
    with qtbot.waitSignal(dlg.photoShown, timeout=10000) as blocker:
        dlg.show_photo()
    assert blocker.args == [False] and "broken.jpg: not a readable image" in dlg.status.text()
    assert dlg.photo.array() is None


def test_workspace_names_images_uniquely_and_forgets_them_with_the_model(qtbot, tiny_gen):
    from engine.latents import Latent
    from engine.models.dcgan import DCGANGenerator

    ws = Workspace()
    ws.set_generator(tiny_gen)
    a = Latent(tiny_gen.seed_latents([1]), "z", {}, image={"path": "/x/face-1.png"})
    b = Latent(tiny_gen.seed_latents([2]), "z", {}, image={"path": "/y/face-1.png"})
    assert ws.add_image(a) == "face_1" and ws.add_image(b) == "face_1_2" and ws.add_image(a) == "face_1"
    other = DCGANGenerator(nz=8, ngf=8, n_up=2)
    other.identity = "another"
    ws.set_generator(other)
    assert ws.images == {}


def test_the_ui_thread_reads_renders_and_writes_nothing(qtbot, make_window, photo, tmp_path, monkeypatch):
    """Loading the photo, the final reconstruction and saving the .latent all happen on workers:
    the job's last progress record already holds the reconstruction."""
    import threading

    import engine.latents
    import engine.projection

    on_ui = []

    def watch(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kw):
            if threading.current_thread() is threading.main_thread():
                on_ui.append(name)
            return real(*args, **kw)

        monkeypatch.setattr(module, name, wrapper)

    for module, name in ((engine.projection, "load_image"), (engine.projection, "render_latent")):
        watch(module, name)
    watch(engine.latents, "save_latent")
    win = make_window()
    dlg = win.open_image_dialog(str(photo))
    qtbot.waitUntil(lambda: dlg.photo.array() is not None, timeout=10000)
    dlg.steps.setValue(6)
    dlg.distance.setCurrentText("pixel")
    with qtbot.waitSignal(dlg.runner.stopped, timeout=60000):
        dlg.start()
    assert dlg.latent is not None
    assert on_ui == []
    assert np.array_equal(dlg.recon.array(), render_latent(win.ws.gen, dlg.latent)[0])
    on_ui.clear()  # (the line above ran on this thread itself)
    with qtbot.waitSignal(dlg.saved, timeout=20000):
        dlg.save(tmp_path / "x.latent")
    assert on_ui == []


def test_the_dialog_says_before_the_fit_when_it_will_use_pixel_mse(qtbot, make_window, photo, tmp_path, monkeypatch):
    import engine.backbones
    from engine.distances import backbone

    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(engine.backbones, "hub_checkpoint_dir", lambda: hub)  # where backbone files are looked up
    win = make_window()
    dlg = win.open_image_dialog(str(photo))
    assert dlg.distance.currentText() == "lpips-vgg"
    note = dlg.distance_note
    assert not note.isHidden() and "pixel MSE" in note.text() and backbone("vgg").filename in note.text()
    assert str(hub) in note.text()
    dlg.distance.setCurrentText("pixel")
    assert note.isHidden()
    (hub / backbone("vgg").filename).write_bytes(b"")  # the file is there: LPIPS will be used
    dlg.distance.setCurrentText("lpips-vgg")
    assert note.isHidden()
    dlg.tune.setChecked(True)  # tuning uses LPIPS-AlexNet, whose file is still missing
    assert not note.isHidden() and "Tuning" in note.text() and backbone("alex").filename in note.text()


def test_opening_a_latent_file_reads_it_on_a_worker(qtbot, make_window, tiny_gen, tmp_path, monkeypatch):
    import threading

    import engine.latents
    from engine.directions import model_ref
    from engine.latents import Latent, save_latent

    lat = Latent(tiny_gen.seed_latents([7]), "z", model_ref(tiny_gen), image={"path": str(tmp_path / "pic.png")})
    path = save_latent(lat, tmp_path / "pic.latent")
    threads = []
    real = engine.latents.load_latent

    def load(*args, **kw):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kw)

    monkeypatch.setattr(engine.latents, "load_latent", load)
    win = make_window()
    win.open_latent(str(path))
    qtbot.waitUntil(lambda: win.preview.seeds.text() == "@pic", timeout=10000)
    assert threads == [False] and "pic" in win.ws.images
    bad = tmp_path / "bad.latent"
    bad.write_bytes(b"junk")
    from PySide6.QtWidgets import QMessageBox

    win.open_latent(str(bad))
    qtbot.waitUntil(lambda: any(b.objectName() == "errorDialog" for b in win.findChildren(QMessageBox)), timeout=10000)
    box = next(b for b in win.findChildren(QMessageBox) if b.objectName() == "errorDialog")
    assert "bad.latent" in box.text()
