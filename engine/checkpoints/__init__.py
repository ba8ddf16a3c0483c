"""Readers of checkpoint formats (DCGAN, rosinality and our own ``.pt``, NVIDIA ``.pkl``, ProGAN, BigGAN).

Each format module registers itself with ``engine.models.registry.register_format`` when imported
(``engine.catalog`` imports them). None of them executes code from a file: torch files are read
by ``torchfile`` (the one reader of both ``torch.save`` containers) and NVIDIA pickles by
``nvidia_pkl``'s restricted unpickler, both built on ``pickles``.
"""
