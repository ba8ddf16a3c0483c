"""Readers of third-party checkpoint formats (rosinality ``.pt``, NVIDIA ``.pkl``).

Each module registers its format with ``engine.models.registry.register_format`` when imported
(``engine.models`` imports them). None of them executes code from a file: torch files are read
with ``torch.load(weights_only=True)`` and pickles with a restricted unpickler.
"""
