"""Open the editor in a prepared state, for screenshots (README figures) and for trying it out.

A SeFa set of the model (32 directions) is computed into a fresh library, the first directions get
the names, ratings and marks of the README's figures, some are pinned with shifts, and the editor
opens on it. Settings and library live in a temporary folder (the user's own are not touched).

    .venv/bin/python scripts/demo_editor.py [--model digiface-dcgan-64] [--space w+] [--seeds 1]
    ../shared/tools/xshot docs/images/editor-main.png 40 -- .venv/bin/python scripts/demo_editor.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (index, name, rating, interpretable, colour) on digiface-dcgan-64's SeFa directions
DIGIFACE_TAGS = [
    (0, "yaw", 5, "yes", "#58a6ff"),
    (1, "profile turn", 4, "yes", "#58a6ff"),
    (2, "pitch", 4, "yes", "#58a6ff"),
    (3, "cap / hat", 4, "yes", "#bc8cff"),
    (4, "exposure", 5, "yes", "#e3a33b"),
    (5, "", 1, "no", ""),
    (6, "warm side light", 3, "unsure", "#e3a33b"),
    (9, "glasses (−)", 3, "unsure", "#bc8cff"),
]


def prepare(model: str, folder: Path) -> tuple[Path, list]:
    """The demo set in ``folder/library`` and the pins ``[[k, t], ...]`` to restore."""
    import torch

    from engine.discovery import get_method
    from engine.export import slug
    from engine.jobs import run_job
    from engine.models import load_generator

    torch.set_num_threads(1)
    gen = load_generator(model)
    spec = get_method("sefa")
    dset = run_job(spec.run(gen, spec.params(), device=gen.device))
    tags = (
        DIGIFACE_TAGS if gen.name == "digiface-dcgan-64" else [(k, f"direction {k}", None, None, "") for k in (0, 1, 2)]
    )
    for k, name, rating, interp, color in tags:
        a = dset.directions[k].annotation
        a.name, a.rating, a.interpretable, a.color = name, rating, interp, color
    path = dset.save(folder / "library" / slug(gen.name, "model") / "sefa-k32.json")
    T = max(abs(x) for x in dset.directions[0].range)
    return path, [[3, round(0.7 * T, 2)], [0, round(-0.4 * T, 2)], [6, round(0.5 * T, 2)]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="digiface-dcgan-64")
    p.add_argument("--seeds", default="1")
    p.add_argument("--space", default=None, help="switch the preview to this space after start-up (e.g. w+)")
    p.add_argument("--current", type=int, default=2, help="the direction selected at start")
    p.add_argument("--panel", default="grid", choices=["grid", "discovery", "browser", "analysis"])
    p.add_argument("--folder", default=None, help="settings and library folder (default: a new temporary one)")
    args = p.parse_args()

    folder = Path(args.folder or tempfile.mkdtemp(prefix="gan-atlas-demo-"))
    os.environ["GAN_ATLAS_CONFIG_DIR"] = str(folder / "config")
    os.environ["GAN_ATLAS_DATA_DIR"] = str(folder / "data")
    path, pins = prepare(args.model, folder)

    from PySide6.QtCore import QTimer

    from desktop.app import configure_threads, make_app
    from desktop.main_window import MainWindow
    from desktop.settings import Settings

    app = make_app()
    settings = Settings()
    settings.library = folder / "library"
    settings.set(MainWindow.PINS_KEY, {str(path.resolve()): pins})
    configure_threads(settings)
    win = MainWindow(settings, model=args.model, open_sets=[str(path)])
    win.show()

    def arrange() -> None:
        if not win.ws.entries:
            QTimer.singleShot(200, arrange)
            return
        entry = win.ws.entries[0]
        win.ws.select(entry, args.current)
        win.preview.seeds.setText(args.seeds)
        win.preview.request_render()
        if args.space:
            win.preview.space.setCurrentText(args.space)
        win.show_dock(args.panel)
        print(json.dumps({"set": str(path), "folder": str(folder)}), flush=True)

    QTimer.singleShot(300, arrange)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
