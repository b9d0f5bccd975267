"""vitcycle: unpaired image-to-image translation (CycleGAN) with Vision-Transformer generators."""

__version__ = "0.1.0"
