"""Discovery methods. Importing this package registers every method."""

from engine.discovery.registry import MethodSpec, get_method, methods, register_method

__all__ = ["MethodSpec", "get_method", "methods", "register_method"]

# Method modules register themselves on import; each is added here as it lands.
import importlib as _importlib

for _name in ("sefa", "ganspace", "latent_recon", "param_svd", "param_opt", "param_spectrum", "param_hybrid"):
    try:
        _importlib.import_module(f"engine.discovery.{_name}")
    except ModuleNotFoundError as _exc:  # a method not written yet
        if _exc.name != f"engine.discovery.{_name}":
            raise
