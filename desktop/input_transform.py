"""Translate / rotate controls for models with an input transform (StyleGAN3), as in NVIDIA's visualizer.

The values mean what NVIDIA's ``gen_images.py --translate X,Y --rotate DEG`` means: the image is
rotated by DEG degrees and moved by (X, Y) image units. The preview turns them into the stored
(inverse) matrix on its worker thread (``desktop.rendering.render_preview``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QToolButton, QWidget
from superqt import QLabeledDoubleSlider
from superqt.utils import qthrottled, signals_blocked

THROTTLE_MS = 25


class TransformControls(QWidget):
    """``Translate x [..] y [..]  Rotate [slider]  Reset``; ``changed`` fires on every edit."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inputTransform")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        tip = "StyleGAN3 input transform: move the image (in image widths / heights) and rotate it"
        label = QLabel("Translate", self)
        label.setToolTip(tip)
        lay.addWidget(label)
        self.tx, self.ty = (self._spin(axis, tip) for axis in ("x", "y"))
        for axis, spin in (("x", self.tx), ("y", self.ty)):
            lay.addWidget(QLabel(axis, self))
            lay.addWidget(spin)
        lay.addSpacing(12)
        rot = QLabel("Rotate", self)
        rot.setToolTip(tip)
        lay.addWidget(rot)
        self.rotate = QLabeledDoubleSlider(Qt.Orientation.Horizontal, self)
        self.rotate.setObjectName("rotateSlider")
        self.rotate.setRange(-180.0, 180.0)
        self.rotate.setDecimals(1)
        self.rotate.setSingleStep(1.0)
        self.rotate.setValue(0.0)
        self.rotate.setToolTip("rotation in degrees, counter-clockwise")
        self.rotate.setMinimumWidth(180)
        self.rotate.valueChanged.connect(self._moved)
        lay.addWidget(self.rotate, 1)
        self.reset_btn = QToolButton(self)
        self.reset_btn.setText("Reset")
        self.reset_btn.setObjectName("resetShift")  # styled as a button, like the sliders' Reset
        self.reset_btn.setToolTip("no translation, no rotation")
        self.reset_btn.clicked.connect(self.reset)
        lay.addWidget(self.reset_btn)

    def _spin(self, axis: str, tip: str) -> QDoubleSpinBox:
        s = QDoubleSpinBox(self)
        s.setObjectName(f"translate_{axis}")
        s.setRange(-2.0, 2.0)
        s.setSingleStep(0.02)
        s.setDecimals(3)
        s.setToolTip(tip)
        s.valueChanged.connect(lambda _v: self.changed.emit())
        return s

    @qthrottled(timeout=THROTTLE_MS, leading=True)
    def _moved(self, _value: float) -> None:
        self.changed.emit()

    def value(self) -> tuple[float, float, float]:
        """``(rotate degrees, translate x, translate y)``."""
        return float(self.rotate.value()), float(self.tx.value()), float(self.ty.value())

    def set_value(self, rotate: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> None:
        with signals_blocked(self.rotate), signals_blocked(self.tx), signals_blocked(self.ty):
            self.rotate.setValue(rotate)
            self.tx.setValue(tx)
            self.ty.setValue(ty)
        self.changed.emit()

    def reset(self) -> None:
        self.set_value(0.0, 0.0, 0.0)

    def describe(self) -> str:
        """A caption fragment, empty for the identity."""
        r, x, y = self.value()
        parts = []
        if x or y:
            parts.append(f"translate {x:g}, {y:g}")
        if r:
            parts.append(f"rotate {r:g}°")
        return " · ".join(parts)
