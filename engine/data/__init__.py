"""Data sets the engine trains on (procedural images with known factors) and their tools."""
