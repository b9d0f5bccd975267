"""vitcycle: unpaired image-to-image translation (CycleGAN) with Vision-Transformer generators."""

__version__ = "0.1.0"

import os as _os

# albumentations checks the network for a newer release at import; that only costs time offline.
_os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from vitcycle import _aliases as _aliases

_aliases.install()  # module paths from before the subpackages (old YAML class paths, scripts)
