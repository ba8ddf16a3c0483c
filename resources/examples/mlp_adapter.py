"""Example adapter: an MLP generator (Linear layers only) mapping z [B, 64] to 16x16 RGB images.

Every Linear layer is editable by the parameter-space methods, and SeFa / GANSpace use the first
one (it receives z itself). Use it with:
    python main.py info resources/examples/mlp_adapter.py
    python main.py discover --model resources/examples/mlp_adapter.py --method sefa --out mlp_sefa.json
"""

import torch
from torch import nn


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int = 64, hidden: int = 256, size: int = 16) -> None:
        super().__init__()
        self.size = size
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 2 * hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(2 * hidden, 3 * size * size),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(-1, 3, self.size, self.size)


def load_generator():
    torch.manual_seed(0)  # random weights for the example; load yours here
    return {"module": MLPGenerator(), "latent_dim": 64, "name": "mlp-example"}
