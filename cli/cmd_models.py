"""``main.py models``: list the built-in models and the checkpoint formats we read."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list built-in models and supported checkpoint formats")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.models import builtin_models, checkpoint_formats

    print("Built-in models:")
    for m in builtin_models():
        print(f"  {m.name:<24} {m.description}")
    print("Checkpoint formats (pass the file, or a model folder, to --model):")
    for f in checkpoint_formats():
        print(f"  {f.name:<28} {', '.join(f.suffixes)}{', or a folder' if f.folders else ''}")
    print(f"  {'adapter':<28} .py (a file defining load_generator(); see README)")
    return 0
