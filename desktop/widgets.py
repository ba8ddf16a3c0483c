"""Small reusable widgets: the image canvas, star ratings, colour swatches, error dialogs."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QAbstractScrollArea, QHBoxLayout, QMessageBox, QSizePolicy, QToolButton, QWidget

from engine.errors import AtlasError, describe_exception, one_line

INTERP_MARK = {"yes": "✓", "unsure": "?", "no": "✗", None: ""}
INTERP_COLOR = {"yes": "#3fb950", "unsure": "#d29922", "no": "#f85149"}


def qimage(array: np.ndarray) -> QImage:
    """A QImage that owns a copy of the ``[H, W, 3]`` uint8 array."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def on_screen(widget: QWidget) -> bool:
    """Whether any of ``widget`` can be seen: shown, and not in a dock tab behind another (Qt
    keeps such docks "visible" but moves them off-screen: their visible region is empty). A
    scroll area (a table, a plot view) is asked for its viewport's region: the viewport covers it."""
    if not widget.isVisible():
        return False
    area = widget.viewport() if isinstance(widget, QAbstractScrollArea) else widget
    return not area.visibleRegion().isEmpty()


def stars(rating: int | None) -> str:
    return "★" * rating + "☆" * (5 - rating) if rating else ""


def error_text(exc: BaseException | str) -> str:
    """What went wrong as one printable line, as the command line prints it: a user's error's
    message, or ``Type: message`` of anything else (``engine.errors.one_line``: no terminal codes,
    no C++ stack trace, never torch's advice to load a file with ``weights_only=False``)."""
    if isinstance(exc, (AtlasError, str)):
        return one_line(exc)
    return describe_exception(exc)


def show_error(parent: QWidget | None, exc: BaseException | str, title: str = "GAN Atlas") -> QMessageBox:
    """Tell the user what went wrong in a dialog: one line (``error_text``); internal errors also
    keep their traceback under the dialog's details, for a bug report."""
    box = QMessageBox(parent)
    box.setWindowTitle(title)
    if isinstance(exc, AtlasError) or isinstance(exc, str):
        box.setIcon(QMessageBox.Icon.Warning)
        box.setText(error_text(exc))
    else:
        box.setIcon(QMessageBox.Icon.Critical)
        box.setText(f"Internal error: {error_text(exc)}")
        box.setInformativeText("This is a bug in GAN Atlas; the details below help to fix it.")
        box.setDetailedText("".join(traceback.format_exception(exc)))
    box.setObjectName("errorDialog")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()  # not exec(): the event loop keeps running (and tests keep going)
    return box


MARGINS = (8, 8, 8, 26)  # the canvas's image area: left, top, right, bottom (the caption's line)


def fit_size(area: tuple[int, int], image: tuple[int, int], smooth: bool) -> tuple[int, int]:
    """``(w, h)`` of an ``image (w, h)`` scaled to fit ``area (w, h)``: whole-pixel zoom when it is
    crisp and enlarged (pixels stay square and sharp), any factor when smooth or reduced."""
    iw, ih = image
    scale = min(area[0] / iw, area[1] / ih)
    if not smooth and scale >= 1:
        scale = int(scale)
    return max(1, int(iw * scale)), max(1, int(ih * scale))


@dataclass(frozen=True)
class Frame:
    """An image ready for ``ImageCanvas``: the array, its QImage (RGB32, the backing store's
    pixel layout) and, when known, its copy scaled for the canvas's view (``scaled_for``: the
    ``(area, smooth)`` it was scaled for). Built by ``prepare_frame`` on any thread."""

    array: np.ndarray
    image: QImage
    scaled: QImage | None = None
    scaled_for: tuple | None = None


def prepare_frame(array: np.ndarray, view: tuple | None = None) -> Frame:
    """A ``Frame`` of ``array [H, W, 3]`` uint8, scaled for ``view = (area, smooth)``
    (``ImageCanvas.view()``) if given. QImage work only: safe on a worker thread, where the
    conversion and the scaling belong (on the UI thread Qt spreads a scaled paint over helper
    threads and waits for them: slow when the machine is busy)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape[:2]
    image = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).convertToFormat(QImage.Format.Format_RGB32)
    if view is None:
        return Frame(a, image)
    area, smooth = view
    return Frame(a, image, _scaled(image, fit_size(area, (w, h), smooth), smooth), view)


def _scaled(image: QImage, size: tuple[int, int], smooth: bool) -> QImage:
    if (image.width(), image.height()) == size:
        return image
    mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
    return image.scaled(size[0], size[1], Qt.AspectRatioMode.IgnoreAspectRatio, mode)


class ImageCanvas(QWidget):
    """Shows a uint8 image scaled to fit, crisp (nearest) or smooth; integer zoom when it fits.

    The scaled image is kept and painted 1:1 (a plain copy into the window), so repaints cost
    almost nothing; it is scaled again only when the canvas's size or the smoothing changes.
    ``set_frame`` takes a ``Frame`` prepared (and scaled for ``view()``) on a worker thread.
    """

    clicked = Signal(QPoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._frame: Frame | None = None
        self._scaled: QImage | None = None
        self._scaled_for: tuple | None = None
        self.smooth = False
        self.caption = ""
        self.placeholder = "No image"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self.setObjectName("canvas")

    @property
    def _image(self) -> QImage | None:
        return None if self._frame is None else self._frame.image

    def set_image(self, array: np.ndarray | None) -> None:
        self.set_frame(None if array is None else prepare_frame(array))

    def set_frame(self, frame: Frame | None) -> None:
        self._frame = frame
        self._scaled, self._scaled_for = (None, None) if frame is None else (frame.scaled, frame.scaled_for)
        self.update()

    def array(self) -> np.ndarray | None:
        """The image on screen, ``[H, W, 3]`` uint8."""
        return None if self._frame is None else self._frame.array

    def set_smooth(self, on: bool) -> None:
        self.smooth = bool(on)
        self.update()

    def view(self) -> tuple:
        """``(area (w, h), smooth)``: what a frame must be scaled for now (``prepare_frame``)."""
        left, top, right, bottom = MARGINS
        return (max(1, self.width() - left - right), max(1, self.height() - top - bottom)), self.smooth

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(512, 512)

    def target_rect(self) -> QRect:
        if self._frame is None:
            return QRect()
        area = self.rect().adjusted(MARGINS[0], MARGINS[1], -MARGINS[2], -MARGINS[3])
        image = self._frame.image
        w, h = fit_size((area.width(), area.height()), (image.width(), image.height()), self.smooth)
        return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().color(self.backgroundRole()).darker(135))
        if self._frame is None:
            p.setPen(self.palette().color(self.foregroundRole()))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        rect = self.target_rect()
        view = self.view()
        if self._scaled is None or self._scaled_for != view:
            self._scaled = _scaled(self._frame.image, (rect.width(), rect.height()), self.smooth)
            self._scaled_for = view
        p.drawImage(rect.topLeft(), self._scaled)
        if self.caption:
            p.setPen(self.palette().color(self.foregroundRole()))
            f = QFont(self.font())
            f.setPointSizeF(f.pointSizeF() * 0.95)
            p.setFont(f)
            p.drawText(
                self.rect().adjusted(10, 0, -10, -6),
                Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
                self.caption,
            )

    def mousePressEvent(self, event) -> None:  # noqa: N802
        self.clicked.emit(event.position().toPoint())
        super().mousePressEvent(event)


class StarRating(QWidget):
    """Five clickable stars; clicking the current rating again clears it."""

    ratingChanged = Signal(object)  # int 1..5 or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rating: int | None = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        self.buttons = []
        for i in range(1, 6):
            b = QToolButton(self)
            b.setAutoRaise(True)
            b.setToolTip(f"rate {i} (key {i})")
            b.clicked.connect(lambda _=False, i=i: self._clicked(i))
            b.setObjectName(f"star{i}")
            lay.addWidget(b)
            self.buttons.append(b)
        lay.addStretch(1)
        self._refresh()

    def rating(self) -> int | None:
        return self._rating

    def set_rating(self, rating: int | None) -> None:
        self._rating = rating
        self._refresh()

    def _clicked(self, i: int) -> None:
        self._rating = None if self._rating == i else i
        self._refresh()
        self.ratingChanged.emit(self._rating)

    def _refresh(self) -> None:
        for i, b in enumerate(self.buttons, 1):
            on = self._rating is not None and i <= self._rating
            b.setText("★" if on else "☆")
            b.setStyleSheet(f"font-size: 17px; color: {'#e3b341' if on else '#8b949e'}; padding: 0 1px;")


class ColorSwatch(QToolButton):
    """A button showing a colour (or 'none')."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._color = ""
        self.setFixedSize(QSize(44, 22))
        self.set_color("")

    def color(self) -> str:
        return self._color

    def set_color(self, color: str) -> None:
        self._color = color or ""
        self.setToolTip(self._color or "no colour")
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        p = QPainter(self)
        r = self.rect().adjusted(5, 5, -5, -5)
        if self._color:
            p.fillRect(r, QColor(self._color))
        else:
            p.setPen(QPen(QColor("#8b949e"), 1, Qt.PenStyle.DashLine))
            p.drawRect(r)


def swatch_pixmap(color: str, size: int = 10) -> QPixmap:
    pm = QPixmap(size, size)
    pm.fill(QColor(color) if color else Qt.GlobalColor.transparent)
    return pm
