"""Images in: files and folders (`imageio`), the unpaired two-folder data module (`datamodule`),
the built-in synthetic set (`synthetic`) and held-out splits (`splits`)."""


def __getattr__(name: str):
    """`vitcycle.data.UnpairedImageDataModule` and the other names of the former `vitcycle.data` module."""
    import importlib

    try:
        return getattr(importlib.import_module("vitcycle.data.datamodule"), name)
    except AttributeError:
        raise AttributeError(f"module 'vitcycle.data' has no attribute {name!r}") from None
