"""Every built-in model and checkpoint format of GAN Atlas, registered by importing its module.

``engine.models.registry`` imports this module the first time it is asked for a model, a format
or the lists of them, so that the model and checkpoint modules can import the registry without
an import cycle. A new family adds its model module and its checkpoint-format module here.
"""

# ProGAN first: its probe only scans key names, so the probes after it never read a ProGAN file
from engine.checkpoints import proggan as _proggan  # noqa: F401, I001  (ProGAN .pth: netdissect and GLD layouts)
from engine.checkpoints import atlas as _atlas  # noqa: F401  (our own StyleGAN2 .pt)
from engine.checkpoints import biggan as _biggan  # noqa: F401  (pytorch-pretrained-biggan folders / .bin)
from engine.checkpoints import nvidia_pkl as _nvidia_pkl  # noqa: F401  (NVIDIA stylegan2-ada-pytorch .pkl)
from engine.checkpoints import nvidia_sg3 as _nvidia_sg3  # noqa: F401  (NVIDIA stylegan3 .pkl, via nvidia_pkl's format)
from engine.checkpoints import rosinality as _rosinality  # noqa: F401  (rosinality stylegan2-pytorch .pt)
from engine.models import dcgan as _dcgan  # noqa: F401  (digiface-dcgan-64 and the DCGAN-tutorial format)
from engine.models import procedural as _procedural  # noqa: F401  (procedural-stylegan2-32)
