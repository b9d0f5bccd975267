"""Faces in photos: detection with eye landmarks (`detect`), the similarity warp that aligns
them (`align`) and `vitcycle data align` on a folder (`folder`)."""


def __getattr__(name: str):
    """`vitcycle.faces.face_detector` and the other names of the former `vitcycle.faces` module."""
    import importlib

    try:
        return getattr(importlib.import_module("vitcycle.faces.detect"), name)
    except AttributeError:
        raise AttributeError(f"module 'vitcycle.faces' has no attribute {name!r}") from None
