"""CycleGAN as a LightningModule: two generators, two discriminators, manual optimization.

Losses of Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (equation numbers of the paper):

- Adversarial, Eq. (1): L_GAN(G_ab, D_b) + L_GAN(G_ba, D_a), least squares by default (Sec. 4;
  `gan_loss`: "hinge", "vanilla"); the discriminator loss is halved, as in the paper.
- Cycle consistency, Eq. (2), one `CycleLoss` per direction (weight, colour space, block size):
  ||G_ba(G_ab(a)) - a||_1 (`cycle_a`) and ||G_ab(G_ba(b)) - b||_1 (`cycle_b`); paper: weight 10.
- Identity, Sec. 5.2: ||G_ab(b) - b||_1 + ||G_ba(a) - a||_1, weighted `identity.weight * cycle_a.weight`.
- Options: CUT's PatchNCE on `gen_ba` (`lambda_nce_b`, Park et al. 2020); what the discriminators
  see (`disc_input`: history pool, source negatives, instance noise, DiffAugment); a gradient
  penalty (`gradient_penalty`); the learning-rate `schedule`; `torch.compile` (`compile`). Each
  group is a dataclass of `vitcycle.training.options`.

Full objective, Eq. (3): L = L_GAN(G_ab, D_b) + L_GAN(G_ba, D_a) + lambda * L_cyc (+ identity).
EMA copies of both generators (`gen_ab_ema`, `gen_ba_ema`) are used for validation, translation
and export.

Passes that do not depend on each other share one forward call: `gen_ab` translates real A and,
for the identity loss, real B in one batch; `gen_ba` translates real B, reconstructs A from fake
B and (identity) maps real A in one batch; each discriminator judges its real and fake images in
one batch. So a step makes three generator calls instead of five (on small CPU batches about 18%
of a step; on a GPU, where a small step is bound by kernel launches, more). It assumes networks
that treat every image on its own (InstanceNorm, LayerNorm, attention within an image); BatchNorm
would mix real and fake statistics.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import OptimizerCallable
from pytorch_lightning.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import CatMetric, MeanMetric

from vitcycle.checkpoint import KEY, model_entry, plain_hyperparameters
from vitcycle.errors import NonFiniteLossError, VitcycleError
from vitcycle.quality.domain_score import high_frequency_energy, per_image_scores
from vitcycle.quality.judge import A, B, load_judge
from vitcycle.training.compiling import compile_graph_count, maybe_compile
from vitcycle.training.diff_augment import diff_augment
from vitcycle.training.ema import GeneratorEMA
from vitcycle.training.image_pool import ImagePool
from vitcycle.training.losses import GAN_LOSSES, DiscOutput, GanLossName, cycle_l1, scales
from vitcycle.training.losses import gradient_penalty as penalty_loss
from vitcycle.training.options import (
    Compile,
    CycleLoss,
    DiscriminatorInput,
    GradientPenalty,
    IdentityLoss,
    Schedule,
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
        optimizer_gen: optimizer of both generators (Adam, lr 2e-4, betas (0.5, 0.999) in the paper).
        optimizer_disc: optimizer of both discriminators.
        gan_loss: adversarial loss, "lsgan" (paper), "hinge" or "vanilla" (non-saturating).
        cycle_a: the A -> B -> A cycle L1 (`CycleLoss`).
        cycle_b: the B -> A -> B cycle L1.
        identity: the identity L1 (`IdentityLoss`); weight 0 skips its generator passes.
        lambda_nce_b: weight of CUT's PatchNCE loss between `gen_ba`'s translation of B and its input,
            seen through `gen_ba`'s own encoder (a ViTTranslator); 0: off. With `cycle_b.weight: 0`
            it replaces the B cycle: `gen_ba` must keep B's content, not what rebuilds B.
        disc_input: what the discriminators see (`DiscriminatorInput`).
        gradient_penalty: the discriminators' gradient penalty (`GradientPenalty`).
        schedule: learning-rate warm-up and decay (`Schedule`).
        ema_decay: decay of the generators' exponential moving average.
        compile: `torch.compile` of the networks (`Compile`).
        finite_check_every: the losses' non-finite flags are gathered on the device and read every this
            many batches, when training stops if one was NaN or infinite; 1 reads them every batch, which
            on a GPU waits for the step (a host sync), 50 does not.
        seed: seed of the pools' draws and the noise (a function of seed and step: resuming is exact).
        pretrained_generator: a checkpoint of `vitcycle pretrain`: its generator weights start both
            generators and their EMA copies (refused if the shapes differ).
        judge: a judge file of `vitcycle judge fit`; validation then logs the domain score of the EMA
            translations (`val/domain_ab`, `val/neither_ab`, `val/layout_ssim_ab`, `val/domain_kept_ab`, b->a
            alike, their means `val/domain`, `val/domain_kept`, the weaker `val/domain_min`) and the judge's
            accuracy on the real images. Validation always logs `val/cycle_l1` and `val/sharpness_ab`, `_ba`
            (the translations' median high-frequency energy over the real target images', `domain_score.sharpness`).
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
        cycle_a: CycleLoss = CycleLoss(),
        cycle_b: CycleLoss = CycleLoss(),
        identity: IdentityLoss = IdentityLoss(),
        lambda_nce_b: float = 0.0,
        disc_input: DiscriminatorInput = DiscriminatorInput(),
        gradient_penalty: GradientPenalty = GradientPenalty(),
        schedule: Schedule = Schedule(),
        ema_decay: float = 0.999,
        compile: Compile = Compile(),
        finite_check_every: int = 1,
        seed: int = 0,
        pretrained_generator: str | None = None,
        judge: str | None = None,
    ) -> None:
        super().__init__()
        if gan_loss not in GAN_LOSSES:
            raise VitcycleError(f"gan_loss {gan_loss!r} must be one of {', '.join(map(repr, GAN_LOSSES))}")
        if lambda_nce_b < 0:
            raise VitcycleError(f"lambda_nce_b ({lambda_nce_b}) must be >= 0")
        if lambda_nce_b > 0 and not hasattr(gen_ba, "forward_encoder"):
            raise VitcycleError(f"lambda_nce_b needs a ViTTranslator gen_ba (its encoder's tokens), not {type(gen_ba).__name__}; "
                                "set lambda_nce_b: 0")
        if finite_check_every < 1:
            raise VitcycleError(f"finite_check_every ({finite_check_every}) must be >= 1")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.cycle_a, self.cycle_b, self.identity = cycle_a, cycle_b, identity
        self.disc_input, self.gradient_penalty, self.schedule, self.compile_options = (
            disc_input, gradient_penalty, schedule, compile)
        if pretrained_generator is not None:  # before the EMA copies are made, so they start there too
            weights = load_pretrained_generator(pretrained_generator)
            for gen in (gen_ab, gen_ba):
                load_generator_weights(gen, weights, pretrained_generator)
        self.gen_ab, self.gen_ba = gen_ab, gen_ba
        self.disc_a, self.disc_b = disc_a, disc_b
        # CUT's projection heads, trained with the generators (None without the loss).
        self.patch_nce_b = PatchNCE(gen_ba.encoder_channels) if lambda_nce_b > 0 else None
        self.gen_ab_ema, self.gen_ba_ema = GeneratorEMA(gen_ab, ema_decay), GeneratorEMA(gen_ba, ema_decay)
        self.pool_a, self.pool_b = ImagePool(disc_input.pool_size), ImagePool(disc_input.pool_size)
        self.optimizer_gen, self.optimizer_disc = optimizer_gen, optimizer_disc
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[gan_loss]
        # Validation means, synchronised across DDP ranks by torchmetrics.
        names = ["cycle_l1", "paired_l1_ab", "paired_l1_ba", "identity_l1"]
        if judge is not None:
            names += [f"{m}_{d}" for m in _VAL_DOMAIN_SCORES for d in ("ab", "ba")]
            names += ["judge_acc_a", "judge_acc_b"]
        self.val_means = nn.ModuleDict({name: MeanMetric() for name in names})
        # Per-image detail of the translations and of the real images, for val/sharpness_* (medians).
        self.val_detail = nn.ModuleDict({name: CatMetric() for name in ("fake_b", "real_b", "fake_a", "real_a")})
        # The judge is loaded once (it never trains, and stays out of this module's checkpoint).
        self._judge = [load_judge(judge)] if judge is not None else []
        self._non_finite: dict[tuple[str, ...], Tensor] = {}  # loss names -> on-device flags, since the last check
        self._compiled, self._fit_start = False, None  # set in on_fit_start

    # ---------------------------------------------------------------- optimizers and schedule
    def configure_optimizers(self):
        heads = [] if self.patch_nce_b is None else list(self.patch_nce_b.parameters())
        opt_gen = self.optimizer_gen(list(self.gen_ab.parameters()) + list(self.gen_ba.parameters()) + heads)
        opt_disc = self.optimizer_disc(list(self.disc_a.parameters()) + list(self.disc_b.parameters()))

        def linear_decay(epoch: int) -> float:  # a function, so LambdaLR's state stays plain data
            return self.schedule.epoch_scale(epoch)

        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, linear_decay) for opt in (opt_gen, opt_disc)]
        return [opt_gen, opt_disc], schedulers

    @property
    def batches_seen(self) -> int:
        """Training batches so far (Lightning's global_step counts both optimizers' steps)."""
        return self.global_step // 2

    def _scale_learning_rates(self, optimizers: list[torch.optim.Optimizer]) -> None:
        """Set each optimizer's rate to its epoch-scheduled value times this batch's warm-up factor."""
        scale = self.schedule.batch_scale(self.batches_seen)
        for opt, scheduler in zip(optimizers, self.lr_schedulers(), strict=True):
            for group, lr in zip(opt.param_groups, scheduler.get_last_lr(), strict=True):
                group["lr"] = lr * scale

    def identity_weight(self) -> float:
        """The identity loss weight of this batch, relative to the A cycle's (faded out if asked)."""
        return self.identity.weight_at(self.batches_seen)

    def on_fit_start(self) -> None:
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 for the fp32 matmuls left outside autocast
        networks = [self.gen_ab, self.gen_ba] + ([self.disc_a, self.disc_b] if self.gradient_penalty.weight == 0 else [])
        options = self.compile_options
        self._compiled = maybe_compile(networks, self.device, options.when, options.mode, options.backend)
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
        logs |= {"schedule/identity_weight": self.identity_weight()}
        self.log_dict(logs, batch_size=real_a.shape[0])
        self.log("cycle", sum(v for k, v in logs.items() if k.startswith("loss/cycle_")), prog_bar=True, logger=False)

    def _disc_view(self, x: Tensor, rng: torch.Generator) -> Tensor:
        """What a discriminator sees of `x`: its DiffAugment transforms, then instance noise; `rng`
        lives on x's device (stream 1)."""
        view = self.disc_input
        return _plus_noise(diff_augment(x, view.augment, rng), view.instance_noise, rng)

    def _generator_step(self, real_a: Tensor, real_b: Tensor) -> tuple[Tensor, dict[str, Tensor], Tensor, Tensor]:
        """Generator objective, Eq. (3): adversarial + lambda * cycle (+ identity). Returns the fakes too."""
        noise_rng = self._step_generator(real_a.device, stream=1)
        lambda_identity = self.identity_weight()
        identity = lambda_identity > 0
        # Three generator calls, with the identity passes riding along (see the module docstring).
        ab_in = [real_a, real_b] if identity else [real_a]
        fake_b, *idt_b = self.gen_ab(torch.cat(ab_in)).split([len(x) for x in ab_in])  # (B, 3, H, W) each
        ba_in = [real_b, fake_b, real_a] if identity else [real_b, fake_b]
        fake_a, rec_a, *idt_a = self.gen_ba(torch.cat(ba_in)).split([len(x) for x in ba_in])  # (B, 3, H, W) each
        g = {
            "loss/g_adv_ab": self.g_loss_fn(self.disc_b(self._disc_view(fake_b, noise_rng))),
            "loss/g_adv_ba": self.g_loss_fn(self.disc_a(self._disc_view(fake_a, noise_rng))),
            "loss/cycle_a": cycle_l1(rec_a, real_a, self.cycle_a.space, self.cycle_a.downsample),
        }
        loss = g["loss/g_adv_ab"] + g["loss/g_adv_ba"] + self.cycle_a.weight * g["loss/cycle_a"]
        if self.cycle_b.weight > 0:
            rec_b = self.gen_ab(fake_a)  # (B, 3, H, W)
            g["loss/cycle_b"] = cycle_l1(rec_b, real_b, self.cycle_b.space, self.cycle_b.downsample)
            loss = loss + self.cycle_b.weight * g["loss/cycle_b"]
        if self.patch_nce_b is not None:
            with torch.no_grad():  # the input side is a fixed target (CUT detaches it too)
                tokens_b = self.gen_ba.forward_encoder(real_b)  # [(B, D, h, w)] per depth
            g["loss/nce_b"] = self.patch_nce_b(self.gen_ba.forward_encoder(fake_a), tokens_b)
            loss = loss + self.hparams.lambda_nce_b * g["loss/nce_b"]
        if identity:
            g["loss/idt_a"] = F.l1_loss(idt_a[0], real_a)
            g["loss/idt_b"] = F.l1_loss(idt_b[0], real_b)
            loss = loss + lambda_identity * self.cycle_a.weight * (g["loss/idt_a"] + g["loss/idt_b"])
        g["loss/gen"] = loss
        return loss, g, fake_a, fake_b

    def _discriminator_step(
        self, real_a: Tensor, real_b: Tensor, fake_a: Tensor, fake_b: Tensor
    ) -> tuple[Tensor, dict[str, Tensor], dict[str, DiscOutput]]:
        """Discriminator objective on real images and pooled (detached) fakes, plus the optional penalty."""
        rng = self._step_generator()
        pooled_fake_a = self.pool_a.query(fake_a, rng)  # (B, 3, H, W)
        pooled_fake_b = self.pool_b.query(fake_b, rng)  # (B, 3, H, W)
        noise_rng = self._step_generator(real_a.device, stream=1)
        fakes_a, fakes_b = pooled_fake_a, pooled_fake_b
        if self.disc_input.source_negatives:  # the other domain's real images count as fakes too
            fakes_a, fakes_b = torch.cat([pooled_fake_a, real_b]), torch.cat([pooled_fake_b, real_a])  # (2B, 3, H, W)
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
        penalty = self.gradient_penalty
        if penalty.weight > 0:
            d["loss/gp_a"] = penalty_loss(self.disc_a, real_a, pooled_fake_a, penalty.center, rng)
            d["loss/gp_b"] = penalty_loss(self.disc_b, real_b, pooled_fake_b, penalty.center, rng)
            loss = loss + penalty.weight * (d["loss/gp_a"] + d["loss/gp_b"])
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
        for name, images in (("fake_b", out["fake_b"]), ("real_b", real_b), ("fake_a", out["fake_a"]), ("real_a", real_a)):
            self.val_detail[name].update(high_frequency_energy(images.float()))  # (B,)
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
        if self.val_detail["fake_b"].update_called:  # detail of the translations over the real target images'
            detail = {name: metric.compute().median() for name, metric in self.val_detail.items()}
            means["sharpness_ab"] = detail["fake_b"] / detail["real_b"].clamp_min(1e-12)
            means["sharpness_ba"] = detail["fake_a"] / detail["real_a"].clamp_min(1e-12)
        if "domain_ab" in means:  # with a judge: figures to pick a checkpoint by (higher is better)
            means["domain"] = 0.5 * (means["domain_ab"] + means["domain_ba"])
            means["domain_min"] = torch.minimum(means["domain_ab"], means["domain_ba"])  # the weaker direction
            means["domain_kept"] = 0.5 * (means["domain_kept_ab"] + means["domain_kept_ba"])
        # torchmetrics has already reduced the means over every process (DDP); sync_dist only
        # averages those equal values, and stops Lightning's warning for each of them
        self.log_dict({f"val/{name}": value for name, value in means.items()}, sync_dist=True)
        for metric in [*self.val_means.values(), *self.val_detail.values()]:
            metric.reset()
