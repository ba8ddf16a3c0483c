import pytest
import torch

from engine.errors import AtlasError
from engine.models import load_generator


def test_example_adapter_loads_as_a_generator():
    g = load_generator("resources/examples/tiny_adapter.py", device="cpu")
    assert g.name == "tiny-example" and g.z_dim == 32 and g.resolution == 16
    assert [(i.name, i.kind) for i in g.editable_layers()] == [
        ("fc", "linear"),
        ("body.0", "conv_transpose"),
        ("body.2", "conv_transpose"),
        ("body.4", "conv"),
    ]
    with torch.no_grad():
        x = g(g.seed_latents([0, 1]))
    assert x.shape == (2, 3, 16, 16)


@pytest.mark.parametrize(
    "source, message",
    [
        ("raise RuntimeError('boom')", "RuntimeError: boom"),
        ("x = 1", "must define load_generator"),
        ("def load_generator():\n    return 3", "must return"),
        ("import torch\ndef load_generator():\n    return torch.nn.Identity(), 8", "output must be"),
    ],
)
def test_bad_adapters_give_clear_errors(tmp_path, source, message):
    p = tmp_path / "adapter.py"
    p.write_text(source)
    with pytest.raises(AtlasError, match=message) as info:
        load_generator(str(p), device="cpu")
    assert "adapter.py" in str(info.value)
