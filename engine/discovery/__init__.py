"""Discovery methods. Importing this package registers every method."""

from engine.discovery.registry import MethodSpec, get_method, methods, register_method

__all__ = ["MethodSpec", "get_method", "methods", "register_method"]

# Each method module registers itself when imported.
from engine.discovery import (  # noqa: E402, F401
    ganspace,
    latent_recon,
    param_hybrid,
    param_opt,
    param_spectrum,
    param_svd,
    sefa,
)
