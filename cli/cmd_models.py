"""``main.py models``: list the built-in models and the checkpoint formats we read."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list built-in models and supported checkpoint formats")
    p.set_defaults(func=run)


def run(args) -> int:
    from engine.model_list import BUILTIN_MODELS, CHECKPOINT_FORMATS  # plain data: no torch import

    print("Built-in models:")
    for name, description in BUILTIN_MODELS:
        print(f"  {name:<24} {description}")
    print("Checkpoint formats (pass the file, or a model folder, to --model):")
    for name, suffixes, folders in CHECKPOINT_FORMATS:
        print(f"  {name:<28} {', '.join(suffixes)}{', or a folder' if folders else ''}")
    print(f"  {'adapter':<28} .py (a file defining load_generator(); see README)")
    return 0
