"""Small reusable widgets: the image canvas, star ratings, colour swatches, error dialogs."""

from __future__ import annotations

import traceback

import numpy as np
from PySide6.QtCore import QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QMessageBox, QSizePolicy, QToolButton, QWidget

from engine.errors import AtlasError, describe_exception, one_line

INTERP_MARK = {"yes": "✓", "unsure": "?", "no": "✗", None: ""}
INTERP_COLOR = {"yes": "#3fb950", "unsure": "#d29922", "no": "#f85149"}


def qimage(array: np.ndarray) -> QImage:
    """A QImage that owns a copy of the ``[H, W, 3]`` uint8 array."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


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


class ImageCanvas(QWidget):
    """Shows a uint8 image scaled to fit, crisp (nearest) or smooth; integer zoom when it fits."""

    clicked = Signal(QPoint)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._array: np.ndarray | None = None
        self.smooth = False
        self.caption = ""
        self.placeholder = "No image"
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self.setObjectName("canvas")

    def set_image(self, array: np.ndarray | None) -> None:
        self._array = None if array is None else np.asarray(array)
        self._image = None if array is None else qimage(array)
        self.update()

    def array(self) -> np.ndarray | None:
        """The image on screen, ``[H, W, 3]`` uint8."""
        return self._array

    def set_smooth(self, on: bool) -> None:
        self.smooth = bool(on)
        self.update()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(512, 512)

    def target_rect(self) -> QRect:
        if self._image is None:
            return QRect()
        area = self.rect().adjusted(8, 8, -8, -26)
        iw, ih = self._image.width(), self._image.height()
        scale = min(area.width() / iw, area.height() / ih)
        if not self.smooth and scale >= 1:
            scale = int(scale)  # whole pixels stay square and sharp
        w, h = max(1, int(iw * scale)), max(1, int(ih * scale))
        return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), self.palette().color(self.backgroundRole()).darker(135))
        if self._image is None:
            p.setPen(self.palette().color(self.foregroundRole()))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.smooth)
        p.drawImage(self.target_rect(), self._image)
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
