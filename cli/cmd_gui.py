"""``main.py gui`` (also what ``main.py`` with no command runs): open the desktop editor."""

from __future__ import annotations

from cli.common import threads_int


def register(sub) -> None:
    p = sub.add_parser(
        "gui",
        help="open the desktop editor (the default when no command is given)",
        description="Open the GAN Atlas editor on a model, optionally with direction sets.",
    )
    p.add_argument(
        "--model",
        "-m",
        default=None,
        help="built-in model name, checkpoint (.pt/.pkl) or adapter (.py); default: the model the "
        "first --open set was found on, else digiface-dcgan-64",
    )
    p.add_argument(
        "--open",
        dest="open_sets",
        action="append",
        default=[],
        metavar="SET.json",
        help="a direction set to open (repeatable)",
    )
    p.add_argument("--device", default=None, help="auto, cpu or cuda[:N] (remembered in the settings)")
    p.add_argument("--threads", type=threads_int, default=None, help="CPU threads for torch (0 = auto; remembered)")
    p.add_argument(
        "--panel",
        choices=["grid", "discovery", "browser", "editor"],
        default=None,
        help="bring this panel to the front",
    )
    p.add_argument("--select", type=int, default=None, help="select this direction of the opened set")
    p.add_argument(
        "--class",
        dest="classes",
        default=None,
        metavar="N",
        help="class-conditional models: the class to show (an index or a class name; the class picker changes it)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    from pathlib import Path

    from engine.errors import AtlasError, BadValueError

    for s in args.open_sets:
        if not Path(s).is_file():
            raise AtlasError(f"{s}: no such direction set file")
    if args.classes is not None and ("," in args.classes or not args.classes.strip()):
        raise BadValueError(f"--class {args.classes}: the editor shows one class at a time; give one")
    model = args.model
    if model is None and args.open_sets:
        try:
            model = json.loads(Path(args.open_sets[0]).read_text(encoding="utf-8")).get("model", {}).get("source")
        except (OSError, ValueError, AttributeError):
            model = None
    try:
        from desktop.app import run as run_app
    except ImportError as exc:
        raise AtlasError(
            f"the editor cannot start: {exc} (run scripts/setup.sh to install PySide6 and the Qt system libraries)"
        ) from None
    return run_app(
        model,
        args.open_sets,
        device=args.device,
        threads=args.threads,
        panel=args.panel,
        select=args.select,
        class_name=args.classes,
    )
