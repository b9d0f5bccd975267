"""vitcycle: unpaired image-to-image translation (CycleGAN) with Vision-Transformer generators."""

__version__ = "0.1.0"

import os as _os

# albumentations checks the network for a newer release at import; that only costs time offline.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
