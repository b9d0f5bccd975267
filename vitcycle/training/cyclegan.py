"""CycleGAN as a LightningModule: two generators, two discriminators, manual optimization.

Losses of Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (equation numbers of the paper):

- Adversarial, Eq. (1): L_GAN(G_ab, D_b) + L_GAN(G_ba, D_a). The paper trains with the
  least-squares form (Sec. 4, "lsgan", default); "hinge", "vanilla" and the relativistic average
  least-squares loss ("ralsgan", whose generator step also shows each discriminator real images)
  are options (`vitcycle.training.losses.GAN_LOSSES`). The discriminator loss is halved, as in the paper.
- Cycle consistency, Eq. (2): ||G_ba(G_ab(a)) - a||_1 + ||G_ab(G_ba(b)) - b||_1,
  weighted by lambda (Eq. 3), `lambda_cycle=10`.
- Identity, Sec. 5.2 (Taigman et al.): ||G_ab(b) - b||_1 + ||G_ba(a) - a||_1, weighted by
  `lambda_identity * lambda_cycle` (0.5 * 10), as in the reference implementation.
- Options for the B -> A -> B cycle, which makes a translated A keep what rebuilds B (an anime
  face's hair colour): its own weight (`lambda_cycle_b`), a luminance-only L1 (`cycle_b_space`),
  an L1 at a lower resolution (`cycle_b_downsample`), or CUT's PatchNCE on `gen_ba` in its place
  (`lambda_nce_b`, Park et al. 2020). The A -> B -> A cycle may compare block means too
  (`cycle_a_downsample`); on selfie2anime that held both generators near their inputs (RESULTS.md).
- Optional source negatives (`source_negatives`): each discriminator also sees the other domain's
  real images as fakes (a selfie is no anime face), so a translation that keeps its source's look
  (anime eyes on a photo) is told apart from the start, not only once its fakes have taught it.
- Optional blurred negatives (`blurred_negatives`): each discriminator also sees its own domain's
  real images at a lower resolution as fakes, so a blurred translation is told apart from the start
  (negative data augmentation, Sinha et al. 2021).
- Optional cycle noise (`cycle_noise`): Gaussian noise on each translation before it is translated
  back, so the cycle cannot be closed by detail hidden below the noise (steganography, Chu et al.
  2017; the "self-defence" of Bashkirova et al. 2019); `cycle_noise_b` sets the B cycle's apart.
- Optional gradient penalty on the discriminators (`lambda_gp`, Gulrajani et al. 2017).
- Optional instance noise (`instance_noise`, Sønderby et al. 2017): Gaussian noise on every
  discriminator input, real and fake, so that pixel noise (photos have it, drawings do not) is
  not an easy cue; on the built-in data it speeds up learning (benchmarks/RESULTS.md). It can be
  annealed to 0 (`instance_noise_fade_steps`), as the paper does, so that fine texture counts again.
- Optional differentiable augmentation of every discriminator input (`disc_augment`, DiffAugment,
  Zhao et al. 2020; `vitcycle.training.diff_augment`): real and fake alike, in both steps, before the noise.

Full objective, Eq. (3): L = L_GAN(G_ab, D_b) + L_GAN(G_ba, D_a) + lambda * L_cyc (+ identity).
Discriminators see fakes from an `ImagePool` of 50 (Sec. 4). Learning rates are constant for
`decay_start_epoch` epochs, then fall linearly towards zero over `decay_epochs` (and stay at zero), stepped explicitly
because Lightning ignores scheduler intervals under manual optimization; runs shorter than an epoch or two
decay over batches instead (`decay_start_batch`, `decay_batches`). EMA copies of both
generators (`gen_ab_ema`, `gen_ba_ema`) are used for validation, translation and export.

Passes that do not depend on each other share one forward call: `gen_ab` translates real A and,
for the identity loss, real B in one batch; `gen_ba` translates real B, reconstructs A from fake
B and (identity) maps real A in one batch; each discriminator judges its real and fake images in
one batch. So a step makes three generator calls instead of five. On small batches one call of
twice the size costs much less than two calls (about 18% of a quickstart step on a CPU; on a GPU,
where a small step is bound by kernel launches, more). It assumes that the networks treat every image on its own, as
InstanceNorm, LayerNorm and attention over one image's tokens do; a generator or discriminator
with BatchNorm would mix real and fake statistics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import get_args

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric

from vitcycle.checkpoint import KEY, model_entry, plain_hyperparameters
from vitcycle.errors import NonFiniteLossError, VitcycleError
from vitcycle.quality.domain_score import per_image_scores
from vitcycle.quality.judge import A, B, load_judge
from vitcycle.training.compiling import CompileWhen, compile_graph_count, maybe_compile
from vitcycle.training.diff_augment import DiffAugmentName, check_policy, diff_augment
from vitcycle.training.ema import GeneratorEMA
from vitcycle.training.image_pool import ImagePool
from vitcycle.training.losses import (
    GAN_LOSSES,
    RELATIVISTIC,
    CycleSpace,
    DiscOutput,
    GanLossName,
    blurred,
    cycle_l1,
    gradient_penalty,
    scales,
)
from vitcycle.training.patch_nce import PatchNCE
from vitcycle.training.pretrain import load_generator_weights, load_pretrained_generator


def _plus_noise(x: Tensor, std: float, rng: torch.Generator) -> Tensor:
    """`x` plus Gaussian noise of `std` drawn from `rng` (on x's device); `x` itself, drawing nothing, when std <= 0."""
    if std <= 0:
        return x
    return x + std * torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)  # shape of x


def _split_scales(pred: DiscOutput, first: int) -> tuple[list[Tensor], list[Tensor]]:
    """A discriminator's output on a batch of two kinds: the logit maps of its first `first` images
    and of the rest, per scale."""
    per_scale = [(p[:first], p[first:]) for p in scales(pred)]  # ((first, 1, h, w), (rest, 1, h, w)) each
    return [head for head, _ in per_scale], [tail for _, tail in per_scale]


def _mean_logit(pred: DiscOutput) -> Tensor:
    return torch.stack([p.detach().float().mean() for p in scales(pred)]).mean()


_VAL_DOMAIN_SCORES = {"domain": "target", "domain_kept": "kept", "neither": "neither", "layout_ssim": "layout_ssim"}
"""Validation means `val/{name}_ab`, `_ba` -> the `per_image_scores` key they average."""


class CycleGAN(pl.LightningModule):
    """CycleGAN training of `gen_ab: A -> B` and `gen_ba: B -> A` against `disc_a`, `disc_b`.

    Args:
        gen_ab: generator from domain A to domain B (e.g. `vitcycle.models.ViTTranslator`).
        gen_ba: generator from domain B to domain A.
        disc_a: discriminator of real vs. fake A images (e.g. `PatchDiscriminator`).
        disc_b: discriminator of real vs. fake B images.
        optimizer_gen: optimizer of both generators (Adam, lr 2e-4, betas (0.5, 0.999) in the configs).
        optimizer_disc: optimizer of both discriminators.
        gan_loss: adversarial loss, "lsgan" (paper default), "hinge", "vanilla" or "ralsgan" (relativistic
            average LSGAN: each discriminator then also judges a batch of real images in the generator step;
            at the selfie2anime CPU recipe's learning rates it saturated both generators, benchmarks/RESULTS.md).
        lambda_cycle: weight of the cycle L1 loss (paper: 10).
        lambda_cycle_b: weight of the B -> A -> B cycle alone, if it should differ (None: `lambda_cycle`).
            That cycle asks a translated A to keep all it needs to rebuild B (an anime face's hair
            colour, say), which a real A need not show; a lower weight frees `gen_ba`.
        lambda_nce_b: weight of CUT's PatchNCE loss (`vitcycle.training.patch_nce`) between `gen_ba`'s
            translation of B and its input, seen through `gen_ba`'s own encoder (a ViTTranslator);
            0 disables it. With `lambda_cycle_b: 0` it replaces the B cycle, whose generator call is
            then skipped: `gen_ba` must keep B's content, not what rebuilds B.
        cycle_b_space: "rgb", or "luma": the B cycle compares luminance alone, so a translated A
            need not carry B's hues (`gen_ab` restores them as it likes); the A cycle stays RGB.
        cycle_b_downsample: the B cycle compares means of blocks this many pixels wide (1: pixels), so
            a translated A need not carry B's finer detail (an anime face's outlined eyes).
        cycle_a_downsample: the same for the A cycle (1: pixels). Meant to stop teaching `gen_ba` to rebuild
            A's lost detail by L1 regression; on selfie2anime it held both generators near their inputs.
        lambda_identity: weight of the identity L1 loss relative to `lambda_cycle` (paper: 0.5).
        identity_fade_steps: if > 0, the identity weight falls linearly from `lambda_identity` to 0
            over this many batches (it keeps a new generator near the input early, then lets go).
        source_negatives: each discriminator also takes the other domain's real images as fakes
            (`d_out/fake_*` then averages over every kind of fake the discriminator is shown).
        blurred_negatives: if > 0, each discriminator also takes its own domain's real images, reduced
            to means of blocks this many pixels wide and resized back (bilinear), as fakes; 0 disables it.
            The gradient penalty, as with source negatives, pairs real images with generated fakes only.
        cycle_noise: std of Gaussian noise added to each translation before it is translated back for
            the cycle losses (the adversarial losses see it clean); 0 disables it.
        cycle_noise_b: that std for the B -> A -> B cycle alone (on the translated A), if it should
            differ (None: `cycle_noise`).
        lambda_gp: weight of the discriminator gradient penalty; 0 disables it.
        gp_center: target gradient norm of the penalty (1: WGAN-GP, 0: zero-centred).
        pool_size: size of each fake-image history pool; 0 disables the pools.
        instance_noise: std of Gaussian noise added to every discriminator input, real and fake
            (Sønderby et al. 2017); 0 disables it.
        instance_noise_fade_steps: if > 0, that std falls linearly to 0 over this many batches (noise
            hides texture finer than it, so a blurred fake passes; annealed, the discriminators see it again).
        disc_augment: DiffAugment transforms applied, in this order, to every discriminator input
            ("color", "translation", "cutout"; `vitcycle.training.diff_augment`); empty: none. The gradient
            penalty, on interpolates of real and generated images, sees them unaugmented.
        ema_decay: decay of the generators' exponential moving average.
        decay_start_epoch: epochs at the initial learning rate before the linear decay.
        decay_epochs: epochs of linear decay to zero (paper: 100 + 100).
        decay_start_batch: with `decay_batches` > 0, batches at the scheduled learning rates before a
            second linear decay to zero, counted in batches: for runs bounded by a batch count or
            a time limit rather than by epochs (the CPU recipe trains for under two epochs).
        decay_batches: batches of that decay (0: none). Both decays apply (their product).
        warmup_steps: if > 0, both learning rates rise linearly from 0 over this many batches.
        finite_check_every: the losses' non-finite flags are gathered on the device and read every
            this many batches, when training stops if one was NaN or infinite. 1 reads them every
            batch, which on a GPU waits for the step to finish (a host sync); e.g. 50 does not.
        compile: `torch.compile` the generators and discriminators: "never", "cuda" (only when
            training on a GPU) or "always". Where it is not available, a warning and eager mode.
            Discriminators stay eager with a gradient penalty (compiled code has no double backward).
        compile_mode: `torch.compile` mode, e.g. "reduce-overhead" (CUDA graphs); None: default.
        compile_backend: `torch.compile` backend ("inductor"; "aot_eager" compiles without codegen).
        seed: seed of the image pools' draws (a function of seed and step, so resuming is exact).
        pretrained_generator: a checkpoint of `vitcycle pretrain`: its generator weights start both
            generators and their EMA copies (refused if the generators' shapes differ).
        judge: a judge file of `vitcycle judge fit`; validation then logs the domain score of the
            EMA translations (`val/domain_ab`: share judged as the target domain, `val/neither_ab`,
            `val/layout_ssim_ab`, and b->a alike; `val/domain`, the mean of both directions' shares;
            `val/domain_min`, the weaker direction's share; `val/domain_kept_ab`, the share judged as the
            target domain with a layout SSIM of at least `domain_score.LAYOUT_FLOOR`, and `val/domain_kept`
            their mean) and the judge's accuracy on the real images.
    """

    def __init__(
        self,
        gen_ab: nn.Module,
        gen_ba: nn.Module,
        disc_a: nn.Module,
        disc_b: nn.Module,
        optimizer_gen: OptimizerCallable = torch.optim.Adam,
        optimizer_disc: OptimizerCallable = torch.optim.Adam,
        gan_loss: GanLossName = "lsgan",
        lambda_cycle: float = 10.0,
        lambda_cycle_b: float | None = None,
        cycle_b_space: CycleSpace = "rgb",
        cycle_b_downsample: int = 1,
        cycle_a_downsample: int = 1,
        lambda_nce_b: float = 0.0,
        lambda_identity: float = 0.5,
        identity_fade_steps: int = 0,
        source_negatives: bool = False,
        blurred_negatives: int = 0,
        cycle_noise: float = 0.0,
        cycle_noise_b: float | None = None,
        lambda_gp: float = 0.0,
        gp_center: float = 1.0,
        pool_size: int = 50,
        instance_noise: float = 0.0,
        instance_noise_fade_steps: int = 0,
        disc_augment: Sequence[DiffAugmentName] = (),
        ema_decay: float = 0.999,
        decay_start_epoch: int = 100,
        decay_epochs: int = 100,
        decay_start_batch: int = 0,
        decay_batches: int = 0,
        warmup_steps: int = 0,
        finite_check_every: int = 1,
        compile: CompileWhen = "never",
        compile_mode: str | None = None,
        compile_backend: str = "inductor",
        seed: int = 0,
        pretrained_generator: str | None = None,
        judge: str | None = None,
    ) -> None:
        super().__init__()
        if min(decay_start_epoch, decay_epochs, decay_start_batch, decay_batches) < 0:
            raise VitcycleError(f"decay_start_epoch ({decay_start_epoch}), decay_epochs ({decay_epochs}), decay_start_batch "
                                f"({decay_start_batch}) and decay_batches ({decay_batches}) must be >= 0")
        if min(identity_fade_steps, instance_noise_fade_steps, warmup_steps) < 0:
            raise VitcycleError(f"identity_fade_steps ({identity_fade_steps}), instance_noise_fade_steps "
                                f"({instance_noise_fade_steps}) and warmup_steps ({warmup_steps}) must be >= 0")
        if cycle_b_space not in get_args(CycleSpace):
            raise VitcycleError(f"cycle_b_space ({cycle_b_space!r}) must be one of {', '.join(map(repr, get_args(CycleSpace)))}")
        if blurred_negatives < 0 or blurred_negatives == 1:
            raise VitcycleError(f"blurred_negatives ({blurred_negatives}) must be 0 (off) or a block width >= 2")
        if cycle_noise < 0:
            raise VitcycleError(f"cycle_noise ({cycle_noise}) must be >= 0 (0: off)")
        if cycle_noise_b is not None and cycle_noise_b < 0:
            raise VitcycleError(f"cycle_noise_b ({cycle_noise_b}) must be >= 0 (0: off), or unset to follow cycle_noise")
        for name, block in (("cycle_a_downsample", cycle_a_downsample), ("cycle_b_downsample", cycle_b_downsample)):
            if block < 1:
                raise VitcycleError(f"{name} ({block}) must be >= 1 (1: compare pixels)")
        if lambda_nce_b < 0:
            raise VitcycleError(f"lambda_nce_b ({lambda_nce_b}) must be >= 0")
        if lambda_nce_b > 0 and not hasattr(gen_ba, "forward_encoder"):
            raise VitcycleError(f"lambda_nce_b needs a ViTTranslator gen_ba (its encoder's tokens), not {type(gen_ba).__name__}; "
                                "set lambda_nce_b: 0")
        check_policy(disc_augment)
        if finite_check_every < 1:
            raise VitcycleError(f"finite_check_every ({finite_check_every}) must be >= 1")
        self.save_hyperparameters()
        self.automatic_optimization = False
        if pretrained_generator is not None:  # before the EMA copies are made, so they start there too
            weights = load_pretrained_generator(pretrained_generator)
            for gen in (gen_ab, gen_ba):
                load_generator_weights(gen, weights, pretrained_generator)
        self.gen_ab, self.gen_ba = gen_ab, gen_ba
        self.disc_a, self.disc_b = disc_a, disc_b
        # CUT's projection heads, trained with the generators (None without the loss).
        self.patch_nce_b = PatchNCE(gen_ba.encoder.embed_dim, len(gen_ba.encoder_indices)) if lambda_nce_b > 0 else None
        self.gen_ab_ema, self.gen_ba_ema = GeneratorEMA(gen_ab, ema_decay), GeneratorEMA(gen_ba, ema_decay)
        self.pool_a, self.pool_b = ImagePool(pool_size), ImagePool(pool_size)
        self.optimizer_gen, self.optimizer_disc = optimizer_gen, optimizer_disc
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[gan_loss]
        # Validation means, synchronised across DDP ranks by torchmetrics.
        names = ["cycle_l1", "paired_l1_ab", "paired_l1_ba", "identity_l1"]
        if judge is not None:
            names += [f"{m}_{d}" for m in _VAL_DOMAIN_SCORES for d in ("ab", "ba")]
            names += ["judge_acc_a", "judge_acc_b"]
        self.val_means = nn.ModuleDict({name: MeanMetric() for name in names})
        # The judge is loaded once (it never trains, and stays out of this module's checkpoint).
        self._judge = [load_judge(judge)] if judge is not None else []
        self._non_finite: dict[tuple[str, ...], Tensor] = {}  # loss names -> on-device flags, since the last check
        self._compiled, self._fit_start = False, None  # set in on_fit_start

    # ---------------------------------------------------------------- optimizers and schedule
    def configure_optimizers(self):
        heads = [] if self.patch_nce_b is None else list(self.patch_nce_b.parameters())
        opt_gen = self.optimizer_gen(list(self.gen_ab.parameters()) + list(self.gen_ba.parameters()) + heads)
        opt_disc = self.optimizer_disc(list(self.disc_a.parameters()) + list(self.disc_b.parameters()))
        start, length = self.hparams.decay_start_epoch, self.hparams.decay_epochs

        def linear_decay(epoch: int) -> float:  # 1 for `start` epochs, then down to 0 (never below)
            return max(0.0, 1.0 - max(0, epoch + 1 - start) / float(length + 1))

        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, linear_decay) for opt in (opt_gen, opt_disc)]
        return [opt_gen, opt_disc], schedulers

    @property
    def batches_seen(self) -> int:
        """Training batches so far (Lightning's global_step counts both optimizers' steps)."""
        return self.global_step // 2

    def batch_lr_scale(self) -> float:
        """This batch's factor on the epoch-scheduled learning rates: the warm-up ramp,
        min(1, (batch + 1) / warmup_steps), times the per-batch decay (1 until `decay_start_batch`,
        then linearly to 0 over `decay_batches`). A function of the batch count, so resuming is exact."""
        hp, batch = self.hparams, self.batches_seen
        warm = min(1.0, (batch + 1) / hp.warmup_steps) if hp.warmup_steps > 0 else 1.0
        if hp.decay_batches <= 0:
            return warm
        return warm * max(0.0, 1.0 - max(0, batch - hp.decay_start_batch) / hp.decay_batches)

    def _scale_learning_rates(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Set each optimizer's rate to its epoch-scheduled value times `batch_lr_scale()`."""
        scale = self.batch_lr_scale()
        for opt, scheduler in zip(optimizers, self.lr_schedulers(), strict=True):
            for group, lr in zip(opt.param_groups, scheduler.get_last_lr(), strict=True):
                group["lr"] = lr * scale

    def _faded(self, value: float, fade_steps: int) -> float:
        """`value` in this batch, falling linearly to 0 over `fade_steps` batches (0: never faded)."""
        if fade_steps <= 0:
            return value
        return value * max(0.0, 1.0 - self.batches_seen / fade_steps)

    def identity_weight(self) -> float:
        """The identity loss weight of this batch, relative to lambda_cycle (faded out if asked)."""
        return self._faded(self.hparams.lambda_identity, self.hparams.identity_fade_steps)

    def instance_noise_std(self) -> float:
        """The std of this batch's instance noise (annealed if asked)."""
        return self._faded(self.hparams.instance_noise, self.hparams.instance_noise_fade_steps)

    def on_fit_start(self) -> None:
        hp = self.hparams
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls left outside autocast
        networks = [self.gen_ab, self.gen_ba] + ([self.disc_a, self.disc_b] if hp.lambda_gp == 0 else [])
        self._compiled = maybe_compile(networks, self.device, hp.compile, hp.compile_mode, hp.compile_backend)
        self._fit_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._compiled and self._fit_start is not None:  # the first batch pays the compilation
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per run, to time it
            seconds, self._fit_start = time.perf_counter() - self._fit_start, None
            rank_zero_info(f"compiled the networks: the first batch took {seconds:.1f} s")
            self.log("compile/first_batch_s", seconds, rank_zero_only=True)

    def on_train_end(self) -> None:
        self._check_finite(force=True)  # a NaN after the last periodic check still stops the run

    def on_train_epoch_end(self) -> None:
        if self._compiled:  # steady state: this stays flat (a rise is a recompile)
            self.log("compile/graphs", float(compile_graph_count()), rank_zero_only=True)

    def on_train_epoch_start(self) -> None:
        # Step to the current epoch: also right after a resume, whenever the checkpoint was written.
        for scheduler in self.lr_schedulers():
            while scheduler.last_epoch < self.current_epoch:
                scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Write the project's own entry (generator specs, training size; `vitcycle.checkpoint`) and
        keep the hyperparameters plain data, so that `torch.load(weights_only=True)` reads the file."""
        if self._trainer is not None and self.trainer.state.fn == "fit":  # also a checkpoint at validation
            self._check_finite(force=True)  # never save weights a NaN has reached (runs on every DDP rank)
        datamodule = getattr(self._trainer, "datamodule", None)
        checkpoint[KEY] = model_entry({"gen_ab": self.gen_ab, "gen_ba": self.gen_ba}, datamodule)
        checkpoint["hyper_parameters"] = plain_hyperparameters(checkpoint.get("hyper_parameters") or {})

    # ---------------------------------------------------------------- training
    def _step_generator(self, device: torch.device | str = "cpu", stream: int = 0) -> torch.Generator:
        """Randomness of this step: a function of seed, step and stream, so resuming is exact.

        Stream 0 (on the CPU) draws the pools and the penalty; stream 1 draws instance noise on the
        images' own device, so no noise tensor is made on the CPU and copied over.
        """
        seed = (self.hparams.seed * 1_000_003 + self.global_step) * 2 + stream
        return torch.Generator(device).manual_seed(seed)

    def train(self, mode: bool = True) -> CycleGAN:
        """As nn.Module.train, but the EMA generators always stay in eval mode (deterministic grids)."""
        super().train(mode)
        self.gen_ab_ema.eval()
        self.gen_ba_ema.eval()
        return self

    def _flag_non_finite(self, losses: dict[str, Tensor]) -> None:
        """Remember, on the device, which losses were NaN or infinite (read by `_check_finite`).

        One flag vector per set of loss names (three kernels, no sync; the set changes only when
        the identity loss fades out)."""
        names = tuple(losses)
        bad = ~torch.isfinite(torch.stack([v.detach().float() for v in losses.values()]))  # (L,) bool
        self._non_finite[names] = self._non_finite[names] | bad if names in self._non_finite else bad

    def _check_finite(self, force: bool = False) -> None:
        """Stop if a loss was non-finite since the last check. Checked in every `finite_check_every`-th
        batch, before its optimizer steps (with 1: before a NaN reaches the weights), and always
        (`force`) before a checkpoint is written and when training ends, so that no NaN is saved."""
        every = self.hparams.finite_check_every
        batch = self.batches_seen - 1 if force else self.batches_seen  # the last batch trained, or the one training
        if not self._non_finite or not (force or (batch + 1) % every == 0):
            return
        flags, self._non_finite = self._non_finite, {}
        seen = bool(torch.cat(list(flags.values())).any())  # the one host sync
        # All DDP ranks take the same decision, so none is left waiting in an all-reduce.
        if self.trainer.strategy.reduce_boolean_decision(seen, all=False):
            bad = list(dict.fromkeys(n for names, v in flags.items() for n, b in zip(names, v.tolist(), strict=True) if b))
            first = max(0, batch - every + 1)
            when = f"batch {batch}" if first == batch else f"one of batches {first}-{batch}"
            raise NonFiniteLossError(
                f"non-finite loss at {when} (epoch {self.current_epoch}): {', '.join(bad) or 'on another DDP rank'}. "
                "Lower the learning rate, check the input data, or train in 32-bit precision (32-true)."
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        real_a, real_b = batch["a"], batch["b"]  # (B, 3, H, W) each, in [-1, 1]
        opt_gen, opt_disc = self.optimizers()
        self._scale_learning_rates([opt_gen, opt_disc])

        # Generators: fakes are computed once and reused (detached) for the discriminators.
        with self.toggled_optimizer(opt_gen):
            loss_gen, g, fake_a, fake_b = self._generator_step(real_a, real_b)
            self._flag_non_finite(g)
            self._check_finite()
            opt_gen.zero_grad(set_to_none=True)
            self.manual_backward(loss_gen)
            opt_gen.step()
        self.gen_ab_ema.update(self.gen_ab)
        self.gen_ba_ema.update(self.gen_ba)

        # Discriminators, on history-pool fakes.
        with self.toggled_optimizer(opt_disc):
            loss_disc, d, preds = self._discriminator_step(real_a, real_b, fake_a, fake_b)
            self._flag_non_finite(d)
            self._check_finite()
            opt_disc.zero_grad(set_to_none=True)
            self.manual_backward(loss_disc)
            opt_disc.step()

        logs = {k: v.detach() for k, v in {**g, **d}.items()}
        logs |= {f"d_out/{name}": _mean_logit(pred) for name, pred in preds.items()}
        logs |= {"lr/gen": opt_gen.param_groups[0]["lr"], "lr/disc": opt_disc.param_groups[0]["lr"]}
        logs |= {"schedule/identity_weight": self.identity_weight(), "schedule/instance_noise": self.instance_noise_std()}
        self.log_dict(logs, batch_size=real_a.shape[0])
        self.log("cycle", sum(v for k, v in logs.items() if k.startswith("loss/cycle_")), prog_bar=True, logger=False)

    def _disc_view(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """What a discriminator sees of `x`: its DiffAugment transforms, then this batch's instance noise
        (`instance_noise_std`); `rng` lives on x's device (stream 1)."""
        return _plus_noise(diff_augment(x, self.hparams.disc_augment, rng), self.instance_noise_std(), rng)

    def _generator_adversarial(self, disc: nn.Module, fake: Tensor, real: Tensor, rng: torch.Generator) -> Tensor:
        """The generator's adversarial loss on `fake`; a relativistic loss also needs `disc` on `real`
        (one call: fakes, then reals)."""
        if self.hparams.gan_loss not in RELATIVISTIC:
            return self.g_loss_fn(disc(self._disc_view(fake, rng)))
        pred = disc(self._disc_view(torch.cat([fake, real]), rng))  # (B + B, 3, H, W) in
        return self.g_loss_fn(*_split_scales(pred, len(fake)))

    def _generator_step(self, real_a: Tensor, real_b: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """Generator objective, Eq. (3): adversarial + lambda * cycle (+ identity). Returns the fakes too."""
        hp = self.hparams
        noise_rng = self._step_generator(real_a.device, stream=1)
        lambda_identity = self.identity_weight()
        identity = lambda_identity > 0
        # Three generator calls, with the identity passes riding along (see the module docstring).
        ab_in = [real_a, real_b] if identity else [real_a]
        fake_b, *idt_b = self.gen_ab(torch.cat(ab_in)).split([len(x) for x in ab_in])  # (B, 3, H, W) each
        cycle_b_in = _plus_noise(fake_b, hp.cycle_noise, noise_rng)  # (B, 3, H, W): what gen_ba rebuilds A from
        ba_in = [real_b, cycle_b_in, real_a] if identity else [real_b, cycle_b_in]
        fake_a, rec_a, *idt_a = self.gen_ba(torch.cat(ba_in)).split([len(x) for x in ba_in])  # (B, 3, H, W) each
        g = {
            "loss/g_adv_ab": self._generator_adversarial(self.disc_b, fake_b, real_b, noise_rng),
            "loss/g_adv_ba": self._generator_adversarial(self.disc_a, fake_a, real_a, noise_rng),
            "loss/cycle_a": cycle_l1(rec_a, real_a, downsample=hp.cycle_a_downsample),
        }
        loss = g["loss/g_adv_ab"] + g["loss/g_adv_ba"] + hp.lambda_cycle * g["loss/cycle_a"]
        lambda_cycle_b = hp.lambda_cycle if hp.lambda_cycle_b is None else hp.lambda_cycle_b
        if lambda_cycle_b > 0:
            cycle_noise_b = hp.cycle_noise if hp.cycle_noise_b is None else hp.cycle_noise_b
            rec_b = self.gen_ab(_plus_noise(fake_a, cycle_noise_b, noise_rng))  # (B, 3, H, W)
            g["loss/cycle_b"] = cycle_l1(rec_b, real_b, hp.cycle_b_space, hp.cycle_b_downsample)
            loss = loss + lambda_cycle_b * g["loss/cycle_b"]
        if self.patch_nce_b is not None:
            with torch.no_grad():  # the input side is a fixed target (CUT detaches it too)
                tokens_b = self.gen_ba.forward_encoder(real_b)  # [(B, D, h, w)] per depth
            g["loss/nce_b"] = self.patch_nce_b(self.gen_ba.forward_encoder(fake_a), tokens_b)
            loss = loss + hp.lambda_nce_b * g["loss/nce_b"]
        if identity:
            g["loss/idt_a"] = F.l1_loss(idt_a[0], real_a)
            g["loss/idt_b"] = F.l1_loss(idt_b[0], real_b)
            loss = loss + lambda_identity * hp.lambda_cycle * (g["loss/idt_a"] + g["loss/idt_b"])
        g["loss/gen"] = loss
        return loss, g, fake_a, fake_b

    def _discriminator_step(
        self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, DiscOutput]]:
        """Discriminator objective on real images and pooled (detached) fakes, plus the optional penalty."""
        hp = self.hparams
        rng = self._step_generator()
        pooled_fake_a = self.pool_a.query(fake_a, rng)  # (B, 3, H, W)
        pooled_fake_b = self.pool_b.query(fake_b, rng)  # (B, 3, H, W)
        noise_rng = self._step_generator(real_a.device, stream=1)
        fakes_a, fakes_b = pooled_fake_a, pooled_fake_b
        if hp.source_negatives:  # the other domain's real images count as fakes too
            fakes_a, fakes_b = torch.cat([pooled_fake_a, real_b]), torch.cat([pooled_fake_b, real_a])  # (2B, 3, H, W)
        if hp.blurred_negatives:  # so are their own real images, blurred
            fakes_a = torch.cat([fakes_a, blurred(real_a, hp.blurred_negatives)])  # (B' + B, 3, H, W)
            fakes_b = torch.cat([fakes_b, blurred(real_b, hp.blurred_negatives)])  # (B' + B, 3, H, W)
        sides = {"a": (self.disc_a, real_a, fakes_a), "b": (self.disc_b, real_b, fakes_b)}
        preds: dict[str, DiscOutput] = {}
        for name, (disc, real, fake) in sides.items():
            pred = disc(self._disc_view(torch.cat([real, fake]), noise_rng))  # real, then fake: (B + B', 3, H, W) in
            preds[f"real_{name}"], preds[f"fake_{name}"] = _split_scales(pred, len(real))
        d = {
            "loss/d_a": self.d_loss_fn(preds["real_a"], preds["fake_a"]),
            "loss/d_b": self.d_loss_fn(preds["real_b"], preds["fake_b"]),
        }
        loss = d["loss/d_a"] + d["loss/d_b"]
        if hp.lambda_gp > 0:
            d["loss/gp_a"] = gradient_penalty(self.disc_a, real_a, pooled_fake_a, hp.gp_center, rng)
            d["loss/gp_b"] = gradient_penalty(self.disc_b, real_b, pooled_fake_b, hp.gp_center, rng)
            loss = loss + hp.lambda_gp * (d["loss/gp_a"] + d["loss/gp_b"])
        d["loss/disc"] = loss
        return loss, d, preds

    # ---------------------------------------------------------------- evaluation (EMA generators)
    @torch.no_grad()
    def translate(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        """Translations and reconstructions of both batches by the EMA generators."""
        fake_b = self.gen_ab_ema(real_a)  # (B, 3, H, W)
        fake_a = self.gen_ba_ema(real_b)  # (B, 3, H, W)
        return {"fake_b": fake_b, "fake_a": fake_a, "rec_a": self.gen_ba_ema(fake_b), "rec_b": self.gen_ab_ema(fake_a)}

    def grid_rows(self, real_a: Tensor, real_b: Tensor) -> dict[str, tuple[Tensor, ...]]:
        """For `ImageGridLogger`: real_a | fake_b | rec_a and real_b | fake_a | rec_b."""
        out = self.translate(real_a, real_b)
        return {"a2b": (real_a, out["fake_b"], out["rec_a"]), "b2a": (real_b, out["fake_a"], out["rec_b"])}

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        real_a, real_b = batch["a"], batch["b"]  # (B, 3, H, W) each
        out = self.translate(real_a, real_b)
        n = real_a.shape[0]  # weights, so that a short last batch counts by its size
        self.val_means["cycle_l1"].update(0.5 * (F.l1_loss(out["rec_a"], real_a) + F.l1_loss(out["rec_b"], real_b)), n)
        if "paired" in batch:  # aligned pairs: real_b[i] is what real_a[i] should become
            self.val_means["paired_l1_ab"].update(F.l1_loss(out["fake_b"], real_b), n)
            self.val_means["paired_l1_ba"].update(F.l1_loss(out["fake_a"], real_a), n)
            self.val_means["identity_l1"].update(F.l1_loss(real_a, real_b), n)
        if self._judge:
            self._update_domain_score(real_a, real_b, out, n)

    def _update_domain_score(self, real_a: Tensor, real_b: Tensor, out: dict[str, Tensor], n: int) -> None:
        """Judge verdicts on the translations and the real images, and the layout SSIM, of one batch."""
        judge = self._judge[0].to(real_a.device)
        verdicts = judge.predict(torch.cat([out["fake_b"], out["fake_a"], real_a, real_b]).float()).argmax(1)
        fake_b_says, fake_a_says, real_a_says, real_b_says = verdicts.split(n)  # (B,) each
        for d, says, target, inputs, outputs in (("ab", fake_b_says, B, real_a, out["fake_b"]),
                                                 ("ba", fake_a_says, A, real_b, out["fake_a"])):
            scores = per_image_scores(says, target, inputs, outputs)  # (B,) each
            for name, key in _VAL_DOMAIN_SCORES.items():
                self.val_means[f"{name}_{d}"].update(scores[key].float().mean(), n)
        self.val_means["judge_acc_a"].update((real_a_says == A).float().mean(), n)
        self.val_means["judge_acc_b"].update((real_b_says == B).float().mean(), n)

    def on_validation_epoch_end(self) -> None:
        means = {name: metric.compute() for name, metric in self.val_means.items() if metric.update_called}
        if "identity_l1" in means:  # paired data: how far below "change nothing" each direction is
            base = means["identity_l1"].clamp_min(1e-8)
            means["paired_ratio_ab"] = means["paired_l1_ab"] / base
            means["paired_ratio_ba"] = means["paired_l1_ba"] / base
            means["paired_ratio"] = 0.5 * (means["paired_ratio_ab"] + means["paired_ratio_ba"])
        if "domain_ab" in means:  # with a judge: figures to pick a checkpoint by (higher is better)
            means["domain"] = 0.5 * (means["domain_ab"] + means["domain_ba"])
            means["domain_min"] = torch.minimum(means["domain_ab"], means["domain_ba"])  # the weaker direction
            means["domain_kept"] = 0.5 * (means["domain_kept_ab"] + means["domain_kept_ba"])
        # torchmetrics has already reduced the means over every process (DDP); sync_dist only
        # averages those equal values, and stops Lightning's warning for each of them
        self.log_dict({f"val/{name}": value for name, value in means.items()}, sync_dist=True)
        for metric in self.val_means.values():
            metric.reset()
