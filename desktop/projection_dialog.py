"""Open image…: project a photo into the loaded generator and use the result as a seed.

The dialog runs ``engine.projection.project_image`` (the latent fit, then optional pivotal tuning)
on a superqt worker through ``JobRunner``: progress, loss, ETA and the current reconstruction
update live beside the photo (centre-cropped and resized as the model will see it); Cancel stops
the job at its next step. When it is done the latent can be saved as a ``.latent`` file and/or
handed to the editor with "Use as seed" (``projected`` signal), after which it is the seed
``@name`` in the preview, the grid inspector and every export.

Mounting (``desktop/main_window.py``): Preview ▸ Open image… creates
``ProjectionDialog(ws.gen, window)``, connects ``projected`` to ``MainWindow.add_projected``
(which calls ``Workspace.add_image`` and shows the seed in the preview) and opens it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets import ImageCanvas, error_text, show_error
from desktop.workers import BackgroundCall, JobRunner, LatestWins
from engine.errors import AtlasError
from engine.jobs import Eta, Progress

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff *.gif);;All files (*)"
DISTANCES = ("lpips-vgg", "lpips-alex", "lpips-squeeze", "pixel")


def load_photo(path: str, resolution: int, channels: int) -> tuple[str, object, dict]:
    """``(path, uint8 [R, R, 3], description)``: the photo as the model will see it (worker thread:
    decoding, cropping and resizing a large photo takes a while)."""
    from engine.projection import load_image
    from engine.render import to_uint8

    target, info = load_image(path, resolution, channels)
    return path, to_uint8(target)[0], info


def write_latent(lat, path: str | Path) -> Path:
    """Save a projected latent (worker thread: hashing and fsync)."""
    from engine.latents import save_latent

    return save_latent(lat, path)


def _captioned(canvas: ImageCanvas, title: str, parent: QWidget) -> QWidget:
    box = QWidget(parent)
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 0, 0, 0)
    label = QLabel(title, box)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    lay.addWidget(label)
    lay.addWidget(canvas, 1)
    return box


class ProjectionDialog(QDialog):
    """Project a photo into ``gen``; ``projected(Latent)`` when the user picks "Use as seed"."""

    projected = Signal(object)
    photoShown = Signal(bool)  # the photo (or why it cannot be read) is shown
    saved = Signal(object)  # Path of a written .latent

    def __init__(
        self, gen, parent: QWidget | None = None, *, image: str | None = None, folder: Path | None = None
    ) -> None:
        super().__init__(parent)
        self.gen = gen
        self.folder = Path(folder) if folder else Path.home()
        self.latent = None
        self.runner = JobRunner(self)
        self.photo_loader = LatestWins(load_photo, self)
        self.photo_loader.result.connect(self._photo_loaded)
        self.photo_loader.failed.connect(self._photo_failed)
        self._eta = Eta()
        self.setWindowTitle(f"Open image — project a photo into {gen.name}")
        self.setObjectName("projectionDialog")

        root = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(QLabel("Photo"))
        self.path = QLineEdit(image or "", self)
        self.path.setPlaceholderText("an image file (any size: the centred square is used)")
        self.path.editingFinished.connect(self.show_photo)
        row.addWidget(self.path, 1)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self.browse)
        row.addWidget(browse)
        root.addLayout(row)

        form = QFormLayout()
        self.space = QComboBox(self)
        self.space.addItems(["auto", *gen.spaces])
        self.space.setToolTip(
            "space of the fitted code: auto = w for StyleGAN2 (w+ fits closer but edits less cleanly), z for the others"
        )
        self.space.setVisible(len(gen.spaces) > 1)
        if len(gen.spaces) > 1:
            form.addRow("Space", self.space)
        self.steps = QSpinBox(self)
        self.steps.setRange(1, 10000)
        self.steps.setValue(500)
        self.steps.setToolTip("optimisation steps of the latent fit")
        form.addRow("Steps", self.steps)
        self.distance = QComboBox(self)
        self.distance.addItems(list(DISTANCES))
        self.distance.setToolTip(
            "what 'close' means: LPIPS (needs its ImageNet backbone file; without it the "
            "labelled pixel distance is used) or pixel MSE"
        )
        form.addRow("Distance", self.distance)
        self.distance_note = QLabel(self)
        self.distance_note.setObjectName("distanceNote")
        self.distance_note.setWordWrap(True)
        self.distance_note.setStyleSheet("color: #d29922;")
        self.distance_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.distance_note)
        tune_row = QHBoxLayout()
        self.tune = QCheckBox("Tune the weights to the photo (pivotal tuning)", self)
        self.tune.setToolTip(
            "after the fit, fine-tune the generator's convolution weights with the code fixed, so "
            "edits start from a faithful reconstruction; the tuned weights apply to this image only"
        )
        tune_row.addWidget(self.tune)
        self.tune_steps = QSpinBox(self)
        self.tune_steps.setRange(1, 10000)
        self.tune_steps.setValue(350)
        self.tune_steps.setSuffix(" steps")
        self.tune_steps.setEnabled(False)
        self.tune.toggled.connect(self.tune_steps.setEnabled)
        tune_row.addWidget(self.tune_steps)
        tune_row.addStretch(1)
        form.addRow("", tune_row)
        self.distance.currentTextChanged.connect(self.update_distance_note)
        self.tune.toggled.connect(self.update_distance_note)
        self.update_distance_note()
        root.addLayout(form)

        pair = QHBoxLayout()
        self.photo = ImageCanvas(self)
        self.photo.placeholder = "no photo"
        self.photo.setMinimumSize(220, 220)
        self.recon = ImageCanvas(self)
        self.recon.placeholder = "reconstruction appears here"
        self.recon.setMinimumSize(220, 220)
        self.recon.setObjectName("reconstructionCanvas")
        pair.addWidget(_captioned(self.photo, f"Photo (as the model sees it, {gen.resolution} px)", self), 1)
        pair.addWidget(_captioned(self.recon, "Reconstruction", self), 1)
        root.addLayout(pair, 1)

        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        root.addWidget(self.bar)
        self.status = QLabel("", self)
        self.status.setObjectName("projectionStatus")
        self.status.setWordWrap(True)
        root.addWidget(self.status)

        buttons = QHBoxLayout()
        self.start_btn = QPushButton("Project", self)
        self.start_btn.setObjectName("startButton")
        self.start_btn.setDefault(True)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel", self)
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.runner.cancel)
        self.save_btn = QPushButton("Save .latent…", self)
        self.save_btn.setEnabled(False)
        self.save_btn.clicked.connect(self.save_dialog)
        self.use_btn = QPushButton("Use as seed", self)
        self.use_btn.setObjectName("useButton")
        self.use_btn.setToolTip("add the projected image to the editor as the seed @name (preview, grid, exports)")
        self.use_btn.setEnabled(False)
        self.use_btn.clicked.connect(self.use)
        self.close_btn = QPushButton("Close", self)
        self.close_btn.clicked.connect(self.reject)
        for b in (self.start_btn, self.cancel_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.save_btn, self.use_btn, self.close_btn):
            buttons.addWidget(b)
        root.addLayout(buttons)

        self.runner.progress.connect(self._progress)
        self.runner.finished.connect(self._done)
        self.runner.failed.connect(self._failed)
        self.runner.cancelled.connect(self._cancelled)
        self.runner.stopped.connect(self._stopped)
        self.resize(720, 560)
        if image:
            self.show_photo()

    # ---- inputs ----------------------------------------------------------------------------------
    def browse(self) -> None:
        start = self.path.text() or str(self.folder)
        path, _ = QFileDialog.getOpenFileName(self, "Open image", start, IMAGE_FILTER)
        if path:
            self.path.setText(path)
            self.show_photo()

    def show_photo(self) -> None:
        """Show the photo as the model will see it (read on a worker; ``photoShown`` follows)."""
        text = self.path.text().strip()
        if not text:
            self.photo.set_image(None)
            return
        self.photo_loader.submit(text, self.gen.resolution, self.gen.img_channels)

    def _photo_loaded(self, _stamp: int, value) -> None:
        path, image, info = value
        self.photo.set_image(image)
        if not self.runner.running:
            W, H = info["size"]
            self.status.setText(
                f"{Path(path).name}: {W}×{H} px, centred square cut out and resized to {self.gen.resolution} px"
            )
        self.photoShown.emit(True)

    def _photo_failed(self, _stamp: int, exc: Exception) -> None:
        self.photo.set_image(None)
        self.status.setText(error_text(exc))
        self.photoShown.emit(False)

    def update_distance_note(self, *_args) -> str:
        """Say before the fit starts when it will use pixel MSE (LPIPS backbone file missing)."""
        from engine.projection import distance_fallback

        notes = [distance_fallback(self.distance.currentText())]
        tune_distance = self._tune_distance()
        if self.tune.isChecked() and tune_distance != self.distance.currentText():
            tuning = distance_fallback(tune_distance)
            notes.append(f"Tuning: {tuning}" if tuning else "")
        text = " ".join(n for n in notes if n)
        self.distance_note.setText(text)
        self.distance_note.setVisible(bool(text))
        return text

    def _tune_distance(self) -> str:
        """Pivotal tuning's distance: the fit's, with LPIPS-AlexNet in place of VGG (as PTI)."""
        distance = self.distance.currentText()
        return distance if distance != "lpips-vgg" else "lpips-alex"

    def params(self):
        """``(ProjectParams, TuneParams or None, distance)`` from the widgets."""
        from engine.projection import ProjectParams, TuneParams

        params = replace(ProjectParams(), space=self.space.currentText() or "auto", steps=int(self.steps.value()))
        tune = TuneParams(steps=int(self.tune_steps.value())) if self.tune.isChecked() else None
        return params, tune, self.distance.currentText()

    # ---- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        from engine.projection import project_image

        if self.runner.running:
            return
        path = self.path.text().strip()
        if not path:
            show_error(self, AtlasError("choose a photo first"))
            return
        self.show_photo()  # the photo is read again on a worker; the job reads it on its own
        params, tune, distance = self.params()
        gen = self.gen
        tune_distance = self._tune_distance()
        fallback = self.update_distance_note()
        self.latent = None
        self._eta = Eta()
        self.bar.setRange(0, params.steps + (tune.steps if tune else 0))
        self.bar.setValue(0)
        self.status.setText("projecting…" + (" with pixel MSE: the LPIPS backbone file is missing" if fallback else ""))
        for w in (
            self.start_btn,
            self.save_btn,
            self.use_btn,
            self.path,
            self.space,
            self.steps,
            self.tune,
            self.tune_steps,
            self.distance,
        ):
            w.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.runner.start(
            lambda: project_image(gen, path, params, tune_params=tune, distance=distance, tune_distance=tune_distance)
        )

    def _progress(self, records: list[Progress]) -> None:
        rec = records[-1]
        for r in reversed(records):
            if r.partial is not None:
                self.recon.set_image(r.partial)
                break
        if rec.total:
            self.bar.setRange(0, rec.total)
            self.bar.setValue(rec.step)
        eta = self._eta.update(rec.step, rec.total)
        bits = [f"{'tuning weights' if rec.stage == 'tune' else 'fitting the code'} · step {rec.step}/{rec.total}"]
        if "distance" in rec.metrics:
            bits.append(f"distance {rec.metrics['distance']:.4f}")
        if "loss" in rec.metrics:
            bits.append(f"loss {rec.metrics['loss']:.4f}")
        if eta is not None:
            bits.append(f"about {eta:.0f} s left")
        self.status.setText(" · ".join(bits))

    def _done(self, lat) -> None:
        # the job's last progress record carried the final render: it is on the canvas already
        self.latent = lat
        self.status.setText(self.summary(lat))
        self.bar.setValue(self.bar.maximum())

    @staticmethod
    def summary(lat) -> str:
        m = lat.metrics
        text = (
            f"done in {m.get('seconds', 0):.1f} s: {m['distance_name']} {m['distance']:.4f}, "
            f"PSNR {m['psnr']:.2f} dB ({lat.space} code)"
        )
        if lat.tuned:
            text += (
                f"; after tuning ({m['tuned_steps']} steps, {m['tuned_seconds']:.1f} s): "
                f"{m['tuned_distance']:.4f}, PSNR {m['tuned_psnr']:.2f} dB"
            )
        return text

    def _failed(self, exc: Exception) -> None:
        self.status.setText(f"failed: {error_text(exc)}")
        show_error(self, exc)

    def _cancelled(self) -> None:
        self.status.setText("cancelled")
        self.bar.setValue(0)

    def _stopped(self) -> None:
        for w in (self.start_btn, self.path, self.space, self.steps, self.tune, self.distance):
            w.setEnabled(True)
        self.tune_steps.setEnabled(self.tune.isChecked())
        self.cancel_btn.setEnabled(False)
        self.save_btn.setEnabled(self.latent is not None)
        self.use_btn.setEnabled(self.latent is not None)

    # ---- results ---------------------------------------------------------------------------------
    def default_save_path(self) -> Path:
        stem = Path(self.path.text().strip() or "photo").stem
        return self.folder / f"{stem}.latent"

    def save(self, path: str | Path) -> BackgroundCall | None:
        """Write the latent to ``path`` on a worker; ``saved(path)`` follows (or an error dialog)."""
        if self.latent is None:
            return None
        self.status.setText(f"saving {path}…")

        def written(out: Path) -> None:
            self.status.setText(f"saved {out}; render or export it with --latent {out.name}, or use it as a seed")
            self.saved.emit(out)

        def not_written(exc: Exception) -> None:
            self.status.setText(f"not saved: {error_text(exc)}")
            show_error(
                self, exc if isinstance(exc, AtlasError) else AtlasError(f"{path}: cannot write ({error_text(exc)})")
            )

        return BackgroundCall(write_latent, self.latent, path, done=written, failed=not_written, parent=self)

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save projected latent", str(self.default_save_path()), "Projected latents (*.latent)"
        )
        if path:
            self.save(path if path.endswith(".latent") else path + ".latent")

    def use(self) -> None:
        if self.latent is None:
            return
        self.projected.emit(self.latent)
        self.accept()

    def reject(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            return
        super().reject()
