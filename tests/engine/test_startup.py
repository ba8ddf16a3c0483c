"""Start-up: `main.py --help`, `models` and `weights status` answer without importing torch; other
commands import only the engine modules they use; the torch-free catalogue and backbone table say
what the registries and torchvision say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import contextlib, io, json, sys
sys.argv = ["main.py", *json.loads(sys.argv[1])]
from cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        rc = main()
    except SystemExit as exc:
        rc = exc.code
print(json.dumps({"rc": rc, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def run_main(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("models",), ("weights", "status"), ("discover", "--help")])
def test_light_commands_do_not_import_torch(args):
    res = run_main(*args)
    assert res["rc"] in (0, None)
    if args != ("discover", "--help"):
        assert "torch" not in res["modules"], args
    assert "torchvision" not in res["modules"] and "lpips" not in res["modules"]
    if args == ("models",):
        assert "digiface-dcgan-64" in res["out"] and "nvidia-stylegan2-ada-pytorch" in res["out"]
    if args == ("discover", "--help"):
        assert "param-spectrum" in res["out"]  # the method list is still shown, read lazily


def test_info_imports_only_the_model_modules():
    res = run_main("info", str(ROOT / "resources" / "models" / "procedural-stylegan2-32.pt"))
    mods = set(res["modules"])
    assert "engine.models" in mods
    assert not {m for m in mods if m.startswith(("engine.discovery", "engine.analysis", "engine.distances"))}
    assert not {"lpips", "torchvision", "PySide6"} & mods


def test_catalogue_matches_the_registries():
    from engine.model_list import BUILTIN_MODELS, CHECKPOINT_FORMATS
    from engine.models import builtin_models, checkpoint_formats

    # registration order follows import order (tests import some modules early): compare as sets
    assert sorted(BUILTIN_MODELS) == sorted((m.name, m.description) for m in builtin_models())
    assert sorted(CHECKPOINT_FORMATS) == sorted(
        (f.name, tuple(f.suffixes), bool(f.folders)) for f in checkpoint_formats()
    )


def test_backbone_table_matches_torch_and_torchvision(monkeypatch, tmp_path):
    import torch
    from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

    from engine.backbones import BACKBONE_URLS, hub_dir_from_environment

    assert BACKBONE_URLS == {
        "alex": AlexNet_Weights.IMAGENET1K_V1.url,
        "vgg": VGG16_Weights.IMAGENET1K_V1.url,
        "squeeze": SqueezeNet1_1_Weights.IMAGENET1K_V1.url,
    }
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}):
        monkeypatch.delenv("TORCH_HOME", raising=False)
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert hub_dir_from_environment() == Path(torch.hub.get_dir())
