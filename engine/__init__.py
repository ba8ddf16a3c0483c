"""GAN Atlas engine: generators, checkpoints, directions, discovery, rendering.

This package is a plain torch library. It never imports Qt (an import-linter contract in
``pyproject.toml`` enforces it); the desktop editor and the CLI are thin layers over it.
"""
