"""Headless command line over the engine: ``python main.py <command>``."""
