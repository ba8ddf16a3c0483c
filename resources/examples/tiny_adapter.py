"""Example adapter: any nn.Module mapping z [B, d] to images [B, C, H, W] in [-1, 1].

Use it with:  python main.py render --model resources/examples/tiny_adapter.py --seeds 0-7 --out tiny.png
For your own model, build the module, load its weights (torch.load(..., weights_only=True)),
and return it with its latent size.
"""

import torch
from torch import nn


class TinyGenerator(nn.Module):
    def __init__(self, latent_dim: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(latent_dim, 64 * 4 * 4)
        self.body = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, 3, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).reshape(-1, 64, 4, 4))


def load_generator():
    torch.manual_seed(0)  # random weights for the example; load yours here
    return {"module": TinyGenerator(32), "latent_dim": 32, "name": "tiny-example"}
