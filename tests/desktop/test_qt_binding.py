"""Guards against Qt-binding regressions that would crash the editor after minutes of use."""

from __future__ import annotations

import sys
import threading

from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    sig = Signal(object)


class _Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def on(self, _value) -> None:
        self.n += 1


def test_signals_keep_refcounts_of_none_and_bools(qtbot):
    """PySide6 6.12.0 on Python 3.11 loses a reference to True / None per slot call, so the
    interpreter aborts ("deallocating True") once they reach zero; requirements.txt pins 6.11.3."""
    emitter, receiver = _Emitter(), _Receiver()
    emitter.sig.connect(receiver.on)
    before_true, before_none = sys.getrefcount(True), sys.getrefcount(None)
    for i in range(3000):
        emitter.sig.emit(i)  # direct connection

    def from_thread() -> None:
        for _ in range(3000):
            emitter.sig.emit(None)  # queued connection

    t = threading.Thread(target=from_thread)
    t.start()
    t.join()
    qtbot.waitUntil(lambda: receiver.n == 6000, timeout=10000)
    # the interpreter itself moves these counts by a few hundred at most; the bug moved them by 6000
    assert sys.getrefcount(True) - before_true > -1000
    assert sys.getrefcount(None) - before_none > -1000
