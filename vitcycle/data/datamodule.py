"""Transforms and the unpaired two-folder data module.

`UnpairedImageDataModule` turns two folders A and B into batches
`{"a": (B, 3, H, W), "b": (B, 3, H, W)}` of float32 in [-1, 1], sampled as in CycleGAN: an epoch
is max(|A|, |B|) items and the partner from the other folder is drawn at random. Every item is a
pure function of (seed, epoch, index), so results do not depend on the number of workers or GPUs.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from vitcycle.data.imageio import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    find_images,
    listed_files,
    read_image,
    read_pairs_manifest,
    to_tensor,
)
from vitcycle.errors import DataError, ImageReadError, ImageTooLargeError

if TYPE_CHECKING:
    import albumentations as A

# ----------------------------------------------------------------------------------------------
# Transforms


def default_load_size(image_size: int) -> int:
    """Shorter-side size before the random crop: 286 for 256, as in CycleGAN."""
    return round(image_size * 286 / 256)


def _albumentations():
    """Import albumentations without its update check (a network call that stalls offline)."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def _resize_shorter(size: int) -> A.SmallestMaxSize:
    # INTER_AREA when shrinking (no aliasing from large photos), bilinear when enlarging.
    return _albumentations().SmallestMaxSize(
        max_size=size, interpolation=cv2.INTER_LINEAR, area_for_downscale="image"
    )


def train_transform(
    image_size: int, load_size: int | None = None, hflip: bool = True, color_jitter: float = 0.0
) -> A.Compose:
    """Resize the shorter side to `load_size`, random square crop, optional flip and jitter.

    Maps an (H, W, 3) uint8 image to an (image_size, image_size, 3) uint8 image (`to_tensor` follows).
    """
    A = _albumentations()
    load_size = load_size or default_load_size(image_size)
    steps: list[A.BasicTransform] = [
        _resize_shorter(load_size),
        A.RandomCrop(height=image_size, width=image_size),
    ]
    if hflip:
        steps.append(A.HorizontalFlip(p=0.5))
    if color_jitter > 0:
        s = color_jitter
        steps.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(s / 4, 0.5), p=1.0))
    return A.Compose(steps)


def eval_transform(image_size: int) -> A.Compose:
    """Deterministic: resize the shorter side to `image_size` and take the centre square."""
    A = _albumentations()
    return A.Compose([_resize_shorter(image_size), A.CenterCrop(height=image_size, width=image_size)])


# ----------------------------------------------------------------------------------------------
# Dataset


def _shared_zeros(n: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """A small tensor in shared memory: writes are seen by (persistent) DataLoader workers."""
    return torch.zeros(n, dtype=dtype).share_memory_()


class UnpairedImageFolder(Dataset):
    """Items `{"a": (3, H, W), "b": (3, H, W)}` from two file lists, read from disk per item.

    `transform` is an albumentations Compose from (H, W, 3) uint8 RGB to a fixed-size uint8 image
    (e.g. `train_transform`); the item is then `to_tensor` of it: float32 in [-1, 1].

    Sampling (`mode`):
      - "random" (training, as CycleGAN's unaligned set): length max(|A|, |B|); the larger list is
        indexed by the item index and its partner comes from a fresh random permutation of the
        smaller list each epoch, so every file of the smaller folder is used about equally often.
      - "cycle": deterministic, item i = (A[i % |A|], B[i % |B|]), length max(|A|, |B|).
      - "aligned": item i = (A[i], B[i]) (|A| == |B|); the item also has "paired": True.

    The pairing and the random augmentation of item i depend only on (seed, epoch, i): the same
    with any number of workers, and each DDP rank sees the same item for the same index.
    Call `set_epoch` at the start of each epoch (the samplers of UnpairedImageDataModule do).

    Unreadable files, and images over `max_pixels` (refused from their header, before decoding):
    with on_bad_image="skip" the next readable file of the same list takes their place and a
    warning names them (counted in `num_skipped`, shared by all workers); with "raise" an
    ImageReadError is raised.
    """

    def __init__(
        self,
        files_a: Sequence[str | os.PathLike],
        files_b: Sequence[str | os.PathLike],
        transform: A.Compose,
        mode: Literal["random", "cycle", "aligned"] = "random",
        seed: int = 0,
        on_bad_image: Literal["skip", "raise"] = "skip",
        max_pixels: float = MAX_PIXELS,
    ):
        if not files_a or not files_b:
            raise DataError("UnpairedImageFolder needs at least one file in each of A and B")
        if mode == "aligned" and len(files_a) != len(files_b):
            raise DataError(f"aligned pairs need as many A as B files ({len(files_a)} != {len(files_b)})")
        if on_bad_image not in ("skip", "raise"):
            raise DataError(f"on_bad_image must be 'skip' or 'raise', not {on_bad_image!r}")
        self.files = (tuple(map(Path, files_a)), tuple(map(Path, files_b)))
        self.transform = transform
        self.mode = mode
        self.seed = seed
        self.on_bad_image = on_bad_image
        self.max_pixels = max_pixels
        self._epoch = _shared_zeros(1)
        self._bad = tuple(_shared_zeros(len(f), torch.uint8) for f in self.files)  # 1 = unreadable
        self._perm: tuple[int, np.ndarray] | None = None  # (epoch, permutation), per process

    def __len__(self) -> int:
        return max(len(self.files[0]), len(self.files[1]))

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's pairing and augmentations (seen by all workers, even persistent ones)."""
        self._epoch[0] = epoch

    @property
    def num_skipped(self) -> int:
        """How many distinct unreadable files were skipped so far (all workers together)."""
        return int(self._bad[0].sum()) + int(self._bad[1].sum())

    @property
    def bad_files(self) -> list[Path]:
        """The unreadable files found so far."""
        return [
            f
            for side in (0, 1)
            for f, bad in zip(self.files[side], self._bad[side].tolist(), strict=True)
            if bad
        ]

    def pair_indices(self, index: int) -> tuple[int, int]:
        """(index into A, index into B) of item `index` in the current epoch."""
        n_a, n_b = len(self.files[0]), len(self.files[1])
        if self.mode != "random":
            return index % n_a, index % n_b
        epoch = self.epoch
        if self._perm is None or self._perm[0] != epoch:
            n_small = min(n_a, n_b)
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 1]).permutation(n_small))
        partner = int(self._perm[1][index % len(self._perm[1])])
        return (index, partner) if n_a >= n_b else (partner, index)

    def _read(self, side: int, index: int) -> np.ndarray:
        """The image at `index` of list A (side 0) or B (1), or the next readable one if skipping."""
        files, bad = self.files[side], self._bad[side]
        n = len(files)
        for k in range(n):
            i = (index + k) % n
            if bad[i]:
                continue
            try:
                return read_image(files[i], self.max_pixels)
            except ImageReadError as err:
                if self.on_bad_image == "raise":
                    raise
                bad[i] = 1
                hint = " with max_pixels" if isinstance(err, ImageTooLargeError) else ""
                warnings.warn(
                    f"skipping unreadable image ({err}{hint}); {self.num_skipped} file(s) skipped so far",
                    stacklevel=2,
                )
        folders = sorted({str(f.parent) for f in files})
        raise DataError(
            f"none of the {n} images of domain {'AB'[side]} can be read (folder(s): {', '.join(folders[:3])})"
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        i_a, i_b = self.pair_indices(index)
        img_a, img_b = self._read(0, i_a), self._read(1, i_b)
        if self.mode == "random":
            # Augmentations seeded by (seed, epoch, index): independent of worker count and order.
            state = np.random.SeedSequence([self.seed, self.epoch, index, 2]).generate_state(2)
            self.transform.set_random_state(np.random.default_rng(state), random.Random(int(state[0])))
        item = {
            "a": to_tensor(self.transform(image=img_a)["image"]),  # (3, H, W) float32 in [-1, 1]
            "b": to_tensor(self.transform(image=img_b)["image"]),  # (3, H, W)
        }
        if self.mode == "aligned":
            item["paired"] = torch.tensor(True)
        return item


class EpochShuffleSampler(Sampler[int]):
    """All indices in an order seeded by (seed, dataset epoch), less the first `skip` of them.

    The epoch lives in the dataset (ResumableLoader or `UnpairedImageDataModule.set_epoch` sets
    it); there is no `set_epoch` here on purpose, so Lightning's own epoch value, which runs one
    ahead after a resume, is not applied. `skip` (set by ResumableLoader after a mid-epoch resume)
    drops the indices the checkpoint had already trained on, for one pass.
    """

    def __init__(self, dataset: UnpairedImageFolder, seed: int = 0):
        self.dataset = dataset
        self.seed = seed
        self.skip = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.dataset.epoch, 0])
        skip, self.skip = self.skip, 0
        return iter(rng.permutation(len(self.dataset)).tolist()[skip:])


class EpochDistributedSampler(DistributedSampler):
    """DistributedSampler that shares its epoch with the dataset (pairing and augmentations).

    Lightning keeps a DistributedSampler it is given (so it does not add its own). The epoch is
    the dataset's, as in EpochShuffleSampler, and `set_epoch` is ignored for the same reason;
    `skip` as there, counted in this rank's indices.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the epoch is the dataset's (see the class docstring)."""

    def __iter__(self) -> Iterator[int]:
        self.epoch = self.dataset.epoch
        skip, self.skip = self.skip, 0
        return iter(list(super().__iter__())[skip:])


class ResumableLoader(DataLoader):
    """The training DataLoader: each epoch is the trainer's, and a resume goes on where it stopped.

    - The epoch of the pairing, shuffle and augmentations is `trainer.current_epoch`, read when an
      epoch starts (the value Lightning passes to `set_epoch` runs one ahead after some resumes).
    - `start` = (epoch, batches already trained in it), from the checkpoint through
      `UnpairedImageDataModule.load_state_dict`, overrides that for the first pass: the epoch is
      the checkpoint's and its trained batches are skipped (their indices: nothing is decoded).
    Without a trainer (plain loops) it is a DataLoader; `UnpairedImageDataModule.set_epoch` picks
    the epoch.
    """

    def __init__(self, *args, trainer: pl.Trainer | None = None, start: tuple[int, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.trainer = trainer
        self.start = start

    def __iter__(self):
        start, self.start = self.start, None
        if start is not None:  # the first pass after a resume: where the checkpoint stopped
            epoch, done = start
            self.dataset.set_epoch(epoch)
            self.sampler.skip = done * self.batch_size  # whole batches (the last incomplete one is dropped)
        elif self.trainer is not None:
            self.dataset.set_epoch(self.trainer.current_epoch)
        return super().__iter__()


def _worker_init(_: int) -> None:
    cv2.setNumThreads(0)  # one decode per worker process; OpenCV's own threads only compete
    cv2.ocl.setUseOpenCL(False)


# ----------------------------------------------------------------------------------------------
# Files, splits and the data module


def _list_folder(folder: str | os.PathLike, name: str) -> list[Path]:
    """Images of a configured folder; a DataError naming the option and folder if there are none."""
    path = Path(folder).expanduser()
    wanted = " ".join(IMAGE_EXTENSIONS)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise DataError(
            f"{name}: {path} {what}; expected a folder of images ({wanted}, searched recursively)"
        )
    files = find_images(path)
    if not files:
        raise DataError(
            f"{name}: no images in {path}; expected files ending in {wanted} (searched recursively)"
        )
    return files


def _hold_out(files: list[Path], fraction: float, seed: int, side: int) -> tuple[list[Path], list[Path]]:
    """(train, val) split of `files`, `fraction` of them (at least 1) held out, chosen by seed."""
    if fraction <= 0 or len(files) < 2:
        return files, []
    n_val = min(len(files) - 1, max(1, round(fraction * len(files))))
    held = set(np.random.default_rng([seed, side, 3]).permutation(len(files))[:n_val].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


class UnpairedImageDataModule(pl.LightningDataModule):
    """Two folders of unpaired images (A and B) for CycleGAN training.

    Batches are `{"a": (B, 3, H, W), "b": (B, 3, H, W)}` float32 in [-1, 1]; aligned validation
    batches (from `val_pairs`) also have `"paired": (B,) bool`.

    Args:
        dir_a: folder of domain A images (searched recursively).
        dir_b: folder of domain B images.
        image_size: side of the square crops.
        batch_size: items per batch (each item is one A and one B image).
        num_workers: DataLoader worker processes.
        val_dir_a: validation images of A; with `val_dir_b`, replaces the hold-out split.
        val_dir_b: validation images of B.
        val_pairs: CSV manifest (header `a,b`, paths relative to the CSV) of aligned validation
            pairs; files it lists are left out of training.
        val_fraction: share of each training folder held out for validation (chosen by `seed`)
            when neither val folders nor `val_pairs` are given; 0 disables validation.
        load_size: shorter side before the random crop (default 286/256 * image_size).
        hflip: random horizontal flips in training.
        color_jitter: strength of random brightness/contrast/saturation (and a quarter of it hue)
            changes in training; 0 disables.
        seed: seeds the split, the shuffling, the pairing and the augmentations.
        exclude: file lists (.txt, e.g. the test split of `vitcycle data split`) whose images are
            never trained or validated on: a held-out test set stays held out.
        on_bad_image: "skip" unreadable files with a warning (the next file takes their place)
            or "raise" an ImageReadError.
        max_pixels: images with more pixels than this are unreadable files (told by their
            header, never decoded: a 20000x20000 PNG would take gigabytes).
    """

    def __init__(
        self,
        dir_a: str,
        dir_b: str,
        image_size: int = 256,
        batch_size: int = 1,
        num_workers: int = 2,
        val_dir_a: str | None = None,
        val_dir_b: str | None = None,
        val_pairs: str | None = None,
        val_fraction: float = 0.05,
        load_size: int | None = None,
        hflip: bool = True,
        color_jitter: float = 0.0,
        seed: int = 0,
        exclude: list[str] | None = None,
        on_bad_image: Literal["skip", "raise"] = "skip",
        max_pixels: float = MAX_PIXELS,
    ):
        super().__init__()
        self.save_hyperparameters()
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise DataError("image_size and batch_size must be >= 1 and num_workers >= 0")
        if load_size is not None and load_size < image_size:
            raise DataError(f"load_size ({load_size}) must be at least image_size ({image_size})")
        if not 0 <= val_fraction < 1:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if (val_dir_a is None) != (val_dir_b is None):
            raise DataError("give both val_dir_a and val_dir_b, or neither")
        if val_pairs is not None and val_dir_a is not None:
            raise DataError("give either val_pairs or val_dir_a/val_dir_b, not both")
        if on_bad_image not in ("skip", "raise"):
            raise DataError(f"on_bad_image must be 'skip' or 'raise', not {on_bad_image!r}")
        if seed < 0:
            raise DataError(f"seed must be >= 0, got {seed}")
        self.dir_a, self.dir_b = dir_a, dir_b
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_dir_a, self.val_dir_b, self.val_pairs = val_dir_a, val_dir_b, val_pairs
        self.val_fraction = val_fraction
        self.load_size = load_size or default_load_size(image_size)
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.seed = seed
        self.exclude = list(exclude or [])
        self.on_bad_image = on_bad_image
        self.max_pixels = max_pixels
        self.train_set: UnpairedImageFolder | None = None
        self.val_set: UnpairedImageFolder | None = None
        self._start: tuple[int, int] | None = None  # a checkpoint's training position, until the loader takes it

    def setup(self, stage: str | None = None) -> None:
        """Find the files and build the data sets (raises DataError for missing/empty folders)."""
        if self.train_set is not None:
            return
        files_a = _list_folder(self.dir_a, "dir_a")
        files_b = _list_folder(self.dir_b, "dir_b")
        if os.path.realpath(self.dir_a) == os.path.realpath(self.dir_b):
            raise DataError(f"dir_a and dir_b are the same folder ({self.dir_a}): give one folder per domain")
        if self.exclude:
            held_out = listed_files(self.exclude)
            files_a = [f for f in files_a if f.resolve() not in held_out]
            files_b = [f for f in files_b if f.resolve() not in held_out]
            if not files_a or not files_b:
                raise DataError(f"exclude: {', '.join(self.exclude)} lists every training image of A or B")
        val_a: list[Path] = []
        val_b: list[Path] = []
        if self.val_pairs is not None:
            try:
                val_a, val_b = read_pairs_manifest(self.val_pairs)
            except DataError as err:
                raise DataError(f"val_pairs: {err}") from None
            listed = {p.resolve() for p in val_a + val_b}
            files_a = [f for f in files_a if f.resolve() not in listed]
            files_b = [f for f in files_b if f.resolve() not in listed]
            if not files_a or not files_b:
                raise DataError(f"val_pairs: {self.val_pairs} lists every training image of A or B")
        elif self.val_dir_a is not None and self.val_dir_b is not None:
            val_a = _list_folder(self.val_dir_a, "val_dir_a")
            val_b = _list_folder(self.val_dir_b, "val_dir_b")
        else:
            files_a, val_a = _hold_out(files_a, self.val_fraction, self.seed, 0)
            files_b, val_b = _hold_out(files_b, self.val_fraction, self.seed, 1)
        self.train_set = UnpairedImageFolder(
            files_a,
            files_b,
            train_transform(self.image_size, self.load_size, self.hflip, self.color_jitter),
            mode="random",
            seed=self.seed,
            on_bad_image=self.on_bad_image,
            max_pixels=self.max_pixels,
        )
        if val_a and val_b:
            self.val_set = UnpairedImageFolder(
                val_a,
                val_b,
                eval_transform(self.image_size),
                mode="aligned" if self.val_pairs is not None else "cycle",
                seed=self.seed,
                on_bad_image=self.on_bad_image,
                max_pixels=self.max_pixels,
            )

    @property
    def num_skipped(self) -> int:
        """Unreadable files skipped so far in training and validation."""
        return sum(s.num_skipped for s in (self.train_set, self.val_set) if s is not None)

    def state_dict(self) -> dict:
        """Where training stands, for checkpoints (Lightning saves it in every one and hands it back
        to `load_state_dict` on every resume): the epoch and the batches of it already trained, or
        the next epoch when this one is done (also when `limit_train_batches` ended it)."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":  # also during fit's validation (best.ckpt)
            return {}
        # `processed` counts the batches whose step ran, also when a checkpoint is written from
        # on_train_batch_end (where `completed` lags one behind).
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:
            return {"train_position": [trainer.current_epoch + 1, 0]}
        return {"train_position": [trainer.current_epoch, done]}

    def load_state_dict(self, state: dict) -> None:
        """Resume the training loader at the checkpoint's position (see `ResumableLoader`)."""
        if "train_position" in state:
            epoch, done = state["train_position"]
            self._start = (int(epoch), int(done))
            # The loader resumes mid-epoch exactly; Lightning's warning that it cannot does not apply.
            warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")

    def set_epoch(self, epoch: int) -> None:
        """For loops without Lightning: select the training epoch (pairing and augmentations)."""
        if self.train_set is None:
            self.setup("fit")
        self.train_set.set_epoch(epoch)

    def _loader(
        self,
        dataset: UnpairedImageFolder,
        sampler: Sampler[int],
        drop_last: bool,
        loader: type[DataLoader] = DataLoader,
        **kwargs,
    ) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=drop_last,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_worker_init,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled, seeded, last incomplete batch dropped.

        Under DDP (trainer.world_size > 1) the loader comes with an EpochDistributedSampler for
        this rank, which Lightning keeps as it is.
        """
        if self.train_set is None:
            self.setup("fit")
        trainer = self.trainer
        world_size = getattr(trainer, "world_size", 1) if trainer is not None else 1
        sampler: Sampler[int]
        if world_size > 1:
            # Built here (not by Lightning) so that set_epoch also reaches the dataset.
            sampler = EpochDistributedSampler(
                self.train_set,
                num_replicas=world_size,
                rank=trainer.global_rank,
                shuffle=True,
                seed=self.seed,
            )
        else:
            sampler = EpochShuffleSampler(self.train_set, seed=self.seed)
        drop_last = len(self.train_set) >= self.batch_size * world_size
        start, self._start = self._start, None
        return self._loader(self.train_set, sampler, drop_last, ResumableLoader, trainer=trainer, start=start)

    def val_dataloader(self) -> DataLoader | list:
        """Deterministic order; an empty list (no validation) when there is no validation set."""
        if self.train_set is None:
            self.setup("validate")
        if self.val_set is None:
            return []
        return self._loader(self.val_set, torch.utils.data.SequentialSampler(self.val_set), drop_last=False)
