"""Export dialogs: the current image, a grid, a morph video (MP4 / GIF), a batch of the directions
marked interpretable. Grids, videos and batches are ``engine.export`` jobs run on a worker with
progress and cancel; the dialog stays responsive and can be closed only when nothing runs. The
file types (file filters, the batch formats) are those of ``engine.writers``: a format registered
there appears here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets import error_text, show_error
from desktop.workers import JobRunner
from desktop.workspace import SetEntry
from engine.errors import AtlasError
from engine.export import (
    MorphOptions,
    direction_title,
    export_grid,
    export_interpretable,
    export_morph,
    interpretable_indices,
    resize,
    save_image,
    slug,
)
from engine.jobs import Progress
from engine.seeds import restrict, seed_codes, seed_label, widen_space
from engine.selection import parse_indices, parse_seeds
from engine.writers import writer_for, writers

TABS = ("image", "grid", "video", "batch")


@dataclass
class ExportContext:
    """What the editor shows when the dialog opens."""

    gen: object
    entry: SetEntry | None
    current: int | None
    pinned: list[int] = field(default_factory=list)  # pinned directions of ``entry``
    seeds: tuple = (0,)  # ints and projected images (engine.seeds.Seed)
    psi: float = 1.0
    space: str = "z"
    layers: tuple[int, int] | None = None
    image: np.ndarray | None = None  # the preview's image, [H, W, 3]
    folder: Path = Path.home()  # where the file names start (the last export's folder, or the library)
    images: dict = field(default_factory=dict)  # the workspace's projected images, by name


def _directions(c: ExportContext, ks: list[int]):
    """The chosen directions, expanded, restricted to the preview's w+ layer range (worker thread)."""
    from engine.render import materialize

    return [restrict(materialize(c.entry.dset, k), c.space, c.layers) for k in ks]


def _filters(kind: str) -> str:
    """File-dialog filters of the registered writers of ``kind`` (``engine.writers``)."""
    return ";;".join(w.pattern for w in writers(kind))


def _path_row(parent: QWidget, edit: QLineEdit, filters: str, folder: bool = False) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    b = QPushButton("Browse…", parent)

    def browse() -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(parent, "Export into folder", edit.text())
        else:
            path, _ = QFileDialog.getSaveFileName(parent, "Export to", edit.text(), filters)
        if path:
            edit.setText(path)

    b.clicked.connect(browse)
    row.addWidget(b)
    return row


class ExportDialog(QDialog):
    def __init__(self, ctx: ExportContext, tab: str = "video", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setObjectName("exportDialog")
        self.ctx = ctx
        self.runner = JobRunner(self)
        self.runner.progress.connect(self._progress)
        self.runner.finished.connect(self._done)
        self.runner.failed.connect(self._failed)
        self.runner.cancelled.connect(self._cancelled)
        self.runner.stopped.connect(self._stopped)
        self.result = None
        self.last_folder: Path | None = None  # where the last export of this dialog went
        self.resize(560, 420)
        root = QVBoxLayout(self)
        self.tabs = QTabWidget(self)
        root.addWidget(self.tabs, 1)
        base = ctx.folder
        stem = slug(ctx.entry.title if ctx.entry else "image", "export")
        k = ctx.current if ctx.current is not None else 0
        res = ctx.gen.resolution if ctx.gen is not None else 64

        # image
        w = QWidget()
        f = QFormLayout(w)
        self.image_out = QLineEdit(str(base / f"{stem}-seed{seed_label(ctx.seeds[0]).lstrip('@')}.png"))
        f.addRow("File", _path_row(self, self.image_out, _filters("image")))
        self.image_size = QSpinBox()
        self.image_size.setRange(8, 4096)
        self.image_size.setValue(max(res, 512))
        self.image_size.setSuffix(" px high")
        f.addRow("Size", self.image_size)
        self.image_smooth = QCheckBox("smooth (Lanczos) upscaling; off = nearest")
        f.addRow("", self.image_smooth)
        f.addRow("", QLabel("Saves the preview exactly as shown (with its edits and seeds)."))
        self.tabs.addTab(w, "Image")

        # grid
        w = QWidget()
        f = QFormLayout(w)
        self.grid_out = QLineEdit(str(base / f"{stem}-grid.png"))
        f.addRow("File", _path_row(self, self.grid_out, _filters("image")))
        self.grid_which = QLineEdit(self._default_indices())
        self.grid_which.setToolTip("direction indices: 3, 0,2,5, 0-7 or all")
        f.addRow("Directions", self.grid_which)
        self.grid_T = QDoubleSpinBox()
        self.grid_T.setRange(0, 1000)
        self.grid_T.setSpecialValueText("auto")
        self.grid_T.setToolTip("columns from -T to T; auto = the directions' suggested range")
        f.addRow("Shift ±", self.grid_T)
        self.grid_steps = QSpinBox()
        self.grid_steps.setRange(2, 25)
        self.grid_steps.setValue(7)
        f.addRow("Steps", self.grid_steps)
        self.grid_seeds = QLineEdit(",".join(map(seed_label, ctx.seeds)))
        f.addRow("Seeds", self.grid_seeds)
        self.grid_size = QSpinBox()
        self.grid_size.setRange(8, 1024)
        self.grid_size.setValue(max(res, 128))
        self.grid_size.setSuffix(" px per cell")
        f.addRow("Cell size", self.grid_size)
        self.grid_smooth = QCheckBox("smooth upscaling")
        f.addRow("", self.grid_smooth)
        self.grid_labels = QCheckBox("labels: direction names and seeds beside the rows, shifts t above the columns")
        self.grid_labels.setObjectName("gridLabels")
        f.addRow("", self.grid_labels)
        self.tabs.addTab(w, "Grid")

        # video
        w = QWidget()
        f = QFormLayout(w)
        self.video_out = QLineEdit(str(base / f"{stem}-{k}.mp4"))
        f.addRow("File", _path_row(self, self.video_out, _filters("video")))
        self.video_which = QLineEdit(self._video_indices())
        self.video_which.setToolTip("one index: sweep -T..T..-T; several (2,5,7): a path through them")
        f.addRow("Directions", self.video_which)
        self.video_seeds = QLineEdit(",".join(map(seed_label, ctx.seeds)))
        self.video_seeds.setToolTip("seeds tiled side by side")
        f.addRow("Seeds", self.video_seeds)
        self.video_T = QDoubleSpinBox()
        self.video_T.setRange(0, 1000)
        self.video_T.setSpecialValueText("auto")
        f.addRow("Shift ±", self.video_T)
        self.frames = QSpinBox()
        self.frames.setRange(2, 2000)
        self.frames.setValue(60)
        f.addRow("Frames", self.frames)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1, 120)
        self.fps.setValue(30)
        f.addRow("Frames per second", self.fps)
        self.video_size = QSpinBox()
        self.video_size.setRange(8, 2048)
        self.video_size.setValue(max(res, 256))
        self.video_size.setSuffix(" px high per seed")
        f.addRow("Size", self.video_size)
        self.video_smooth = QCheckBox("smooth (Lanczos) upscaling; off = nearest")
        self.video_smooth.setChecked(True)
        f.addRow("", self.video_smooth)
        self.tabs.addTab(w, "Video")

        # batch
        w = QWidget()
        f = QFormLayout(w)
        self.batch_out = QLineEdit(str(base / f"{stem}-interpretable"))
        f.addRow("Folder", _path_row(self, self.batch_out, "", folder=True))
        self.batch_format = QComboBox()
        for writer in writers():
            self.batch_format.addItem(f"{writer.name}  ({writer.kind}: {writer.summary})", writer.name)
        f.addRow("Format", self.batch_format)
        n = len(interpretable_indices(ctx.entry.dset)) if ctx.entry else 0
        f.addRow(
            "",
            QLabel(
                f"{n} direction(s) of {ctx.entry.title if ctx.entry else '—'} are marked interpretable;\n"
                "each gets one file (a video format: a morph with the Video tab's settings;\n"
                "an image format: a grid of 7 shifts), plus index.csv."
            ),
        )
        self.tabs.addTab(w, "Batch")
        self.tabs.setCurrentIndex(TABS.index(tab) if tab in TABS else 2)
        if ctx.entry is None:
            for i in (1, 2, 3):
                self.tabs.setTabEnabled(i, False)
            self.tabs.setCurrentIndex(0)

        self.bar = QProgressBar(self)
        root.addWidget(self.bar)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        root.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.export_btn = QPushButton("Export", self)
        self.export_btn.setDefault(True)
        self.export_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel export", self)
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.runner.cancel)
        self.close_btn = QPushButton("Close", self)
        self.close_btn.clicked.connect(self.reject)
        for b in (self.export_btn, self.cancel_btn, self.close_btn):
            buttons.addWidget(b)
        root.addLayout(buttons)

    def _default_indices(self) -> str:
        c = self.ctx
        if c.entry is None:
            return "0"
        if c.pinned:
            return ",".join(map(str, sorted(set(c.pinned) | ({c.current} if c.current is not None else set()))))
        return str(c.current if c.current is not None else 0)

    def _video_indices(self) -> str:
        c = self.ctx
        ks = list(c.pinned)
        if c.current is not None and c.current not in ks:
            ks.append(c.current)
        return ",".join(map(str, ks)) if ks else "0"

    # ---- running ---------------------------------------------------------------------------------
    def _indices(self, text: str) -> list[int]:
        """Direction indices (``3``, ``0,2,5``, ``0-31``, ``all``): the command line's parser."""
        return parse_indices(text, len(self.ctx.entry.dset), what="directions")

    def _seed_list(self, text: str) -> list:
        """Seeds and ``@name`` projected images, at most ``engine.selection.MAX_SEEDS``."""
        return parse_seeds(text, images=self.ctx.images or {}, what="seeds")

    def build_job(self):
        """The engine job for the current tab (``None`` for the image tab, done at once).

        Widgets are read here, on the UI thread; the returned callable runs on the worker and
        does all torch work there (seed latents, expanding parameter directions, rendering).
        """
        c = self.ctx
        tab = TABS[self.tabs.currentIndex()]
        if tab == "image":
            if c.image is None:
                raise AtlasError("the preview has no image yet")
            save_image(
                resize(c.image, self.image_size.value(), smooth=self.image_smooth.isChecked()), self.image_out.text()
            )
            return None
        if tab == "grid":
            ks = self._indices(self.grid_which.text())
            seeds = self._seed_list(self.grid_seeds.text())
            space = widen_space(seeds)
            T, steps = self.grid_T.value(), self.grid_steps.value()
            out, size, smooth = self.grid_out.text(), self.grid_size.value(), self.grid_smooth.isChecked()
            writer_for(out, "image")  # refused now, not on the worker
            labels = self.grid_labels.isChecked()

            def grid_job():
                dirs = _directions(c, ks)
                lo = -T if T > 0 else min(d.range[0] for d in dirs)
                hi = T if T > 0 else max(d.range[1] for d in dirs)
                codes, bases = seed_codes(c.gen, seeds, space, c.psi)
                return export_grid(
                    c.gen,
                    codes,
                    dirs,
                    np.linspace(lo, hi, steps),
                    out,
                    size=size,
                    smooth=smooth,
                    space=space,
                    psi=c.psi,
                    bases=bases,
                    labels=labels,
                    names=[direction_title(k, c.entry.direction(k)) for k in ks],
                    seed_names=[f"seed {s}" if isinstance(s, int) else seed_label(s) for s in seeds],
                )

            return grid_job
        opts = MorphOptions(
            frames=self.frames.value(),
            fps=self.fps.value(),
            size=self.video_size.value(),
            smooth=self.video_smooth.isChecked(),
            T=self.video_T.value() or None,
        )
        opts.check()
        seeds = self._seed_list(self.video_seeds.text())
        space = widen_space(seeds)

        def codes_kw():
            codes, bases = seed_codes(c.gen, seeds, space, c.psi)
            return codes, dict(space=space, psi=c.psi, bases=bases)

        if tab == "video":
            ks = self._indices(self.video_which.text())
            out = Path(self.video_out.text())
            writer_for(out, "video")  # refused now, not on the worker

            def video_job():
                codes, kw = codes_kw()
                return export_morph(c.gen, codes, _directions(c, ks), out, opts, **kw)

            return video_job
        folder, fmt = self.batch_out.text(), self.batch_format.currentData()

        def batch_job():
            codes, kw = codes_kw()
            return export_interpretable(c.gen, c.entry.dset, codes, folder, fmt=fmt, opts=opts, **kw)

        return batch_job

    def start(self) -> None:
        if self.runner.running:
            return
        try:
            job = self.build_job()
        except AtlasError as exc:
            show_error(self, exc)
            return
        if job is None:
            self.status.setText(f"saved {self.image_out.text()}")
            self.result = Path(self.image_out.text())
            self.last_folder = self.result.parent
            return
        self.result = None
        self.bar.setRange(0, 0)
        self.status.setText("exporting…")
        self.export_btn.setEnabled(False)
        self.close_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.tabs.setEnabled(False)
        self.runner.start(job)

    def _progress(self, records: list[Progress]) -> None:
        rec = records[-1]
        if rec.total:
            self.bar.setRange(0, rec.total)
            self.bar.setValue(rec.step)
        if rec.message:
            self.status.setText(rec.message)

    def _done(self, result) -> None:
        self.result = result
        if isinstance(result, list):
            self.status.setText(f"wrote {len(result)} files and index.csv to {self.batch_out.text()}")
            self.last_folder = Path(self.batch_out.text())
        else:
            self.status.setText(f"wrote {result}")
            self.last_folder = Path(result).parent
        self.bar.setRange(0, 1)
        self.bar.setValue(1)

    def _failed(self, exc: Exception) -> None:
        self.status.setText(f"failed: {error_text(exc)}")
        show_error(self, exc)

    def _cancelled(self) -> None:
        self.status.setText("cancelled; no partial file was left behind")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)

    def _stopped(self) -> None:
        self.export_btn.setEnabled(True)
        self.close_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.tabs.setEnabled(True)

    def reject(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            return
        super().reject()
