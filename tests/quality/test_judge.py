"""The domain judge, its "neither" images, the held-out split, and the domain score in eval and validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import JUDGE_ARGS, smooth_image, tiny_config, tiny_cyclegan

from vitcycle.cli import cli_main, main
from vitcycle.data.datamodule import UnpairedImageDataModule
from vitcycle.data.imageio import find_images, read_file_list, read_image, write_image
from vitcycle.data.splits import make_split
from vitcycle.errors import CheckpointError, DataError
from vitcycle.quality.domain_score import (
    LAYOUT_FLOOR,
    DomainScore,
    format_domain_table,
    high_frequency_energy,
    layout_ssim,
    sharpness,
    spread,
)
from vitcycle.quality.judge import (
    NEITHER,
    A,
    B,
    JudgeError,
    arrays_to_tensor,
    blend,
    blur,
    colour_field,
    fit_judge,
    load_judge,
    patch_shuffle,
    pixelate,
    save_judge,
    swap_channels,
)


def _folder(path: Path) -> torch.Tensor:
    return arrays_to_tensor([read_image(f) for f in find_images(path)], 32)  # (N, 3, 32, 32)


def test_judge_calls_true_targets_the_target_domain_and_the_inputs_not(judge_data, judge_file):
    """On the built-in data's held-out pairs: the true anime faces score near 100% as B, the photos
    themselves (an identity generator's output) near 0%, and photos are called A."""
    judge = load_judge(judge_file)
    verdict_a = judge.predict(_folder(judge_data / "valA")).argmax(1)  # (30,)
    verdict_b = judge.predict(_folder(judge_data / "valB")).argmax(1)
    assert (verdict_b == B).float().mean() >= 0.9
    assert (verdict_a == B).float().mean() <= 0.05
    assert (verdict_a == A).float().mean() >= 0.85


def test_judge_training_is_deterministic_for_a_seed(judge_data, judge_file):
    again, _ = fit_judge(judge_data / "trainA", judge_data / "trainB", seed=0, **JUDGE_ARGS)
    saved = load_judge(judge_file).members[0].state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in again.state_dict().items())


def test_neither_images_are_what_they_say():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 32, 32, generator=rng) * 2 - 1
    y = torch.rand(4, 3, 32, 32, generator=rng) * 2 - 1
    shuffled = patch_shuffle(x, rng)
    assert not torch.equal(shuffled, x)
    assert torch.equal(shuffled.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)  # same pixels, moved
    blocks = pixelate(x, rng)
    assert torch.equal(blocks[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2), blocks)
    swapped = swap_channels(x, rng)
    for img, out in zip(x, swapped, strict=True):
        order = [next(c for c in range(3) if torch.equal(out[k], img[c])) for k in range(3)]
        assert sorted(order) == [0, 1, 2] and order != [0, 1, 2]
    mixed = blend(x, y, rng)
    alpha = ((mixed - y) / (x - y)).flatten(1).median(dim=1).values
    assert ((alpha > 0.34) & (alpha < 0.66)).all()
    smooth = blur(x, rng)
    assert smooth.shape == x.shape
    assert torch.allclose(smooth.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.05)  # colours kept ...
    assert smooth.diff(dim=-1).abs().mean() < 0.3 * x.diff(dim=-1).abs().mean()  # ... detail gone
    flat = torch.full_like(x, 0.25)
    assert torch.allclose(blur(flat, rng), flat)  # a normalised kernel
    field = colour_field(x, rng)
    assert torch.allclose(field.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02)  # the colours, averaged
    assert field.diff(dim=-1).abs().max() < 0.05 * x.diff(dim=-1).abs().mean()  # and nothing else


def test_judge_file_round_trip_refuses_overwrite_and_foreign_files(judge_file, tmp_path):
    judge = load_judge(judge_file)
    x = torch.rand(5, 3, 48, 48) * 2 - 1  # any size: resized to the judge's 32 px
    assert torch.allclose(judge.predict(x), load_judge(judge_file).predict(x))
    assert judge.predict(x).shape == (5, 3)
    with pytest.raises(JudgeError, match="already exists"):
        save_judge(judge, judge_file)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(JudgeError, match="not a judge file"):
        load_judge(foreign)
    code = tmp_path / "code.pt"
    torch.save({"format": "vitcycle-judge", "x": Path("/")}, code)  # a pickled object, not plain data
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_judge(code)


def test_cli_judge_fit_refuses_an_existing_out_before_any_work(judge_data, judge_file, capsys):
    before = judge_file.read_bytes()
    code = main(["judge", "fit", "--dir-a", str(judge_data / "trainA"), "--dir-b", str(judge_data / "trainB"),
                 "--out", str(judge_file)])
    assert code == 2
    assert f"--out {judge_file} exists already; pass --overwrite" in capsys.readouterr().err
    assert judge_file.read_bytes() == before


@pytest.fixture(scope="module")
def ensemble_file(judge_data, tmp_path_factory) -> Path:
    """`vitcycle judge fit --seed 0 1`: an ensemble of two judges (of JUDGE_ARGS's size) in one file."""
    out = tmp_path_factory.mktemp("ensemble") / "ensemble.pt"
    flags = ["--size", str(JUDGE_ARGS["size"]), "--width", str(JUDGE_ARGS["width"]), "--steps", str(JUDGE_ARGS["steps"]),
             "--batch-size", str(JUDGE_ARGS["batch_size"])]
    assert main(["judge", "fit", "--dir-a", str(judge_data / "trainA"), "--dir-b", str(judge_data / "trainB"),
                 "--out", str(out), "--seed", "0", "1", *flags]) == 0
    return out


def test_an_ensemble_judges_by_its_members_mean_probability(judge_file, ensemble_file):
    """`judge fit --seed 0 1` holds the seed-0 judge (the same weights as a lone seed-0 fit) and a
    different seed-1 judge; the ensemble's probabilities are their mean."""
    ensemble, alone = load_judge(ensemble_file), load_judge(judge_file)
    assert len(ensemble.members) == 2 and len(alone.members) == 1
    first, second = ensemble.members
    assert all(torch.equal(v, alone.members[0].state_dict()[k]) for k, v in first.state_dict().items())
    assert not torch.equal(first.head[1].weight, second.head[1].weight)
    assert [m["seed"] for m in ensemble.summary] == [0, 1]
    x = torch.rand(6, 3, 40, 40) * 2 - 1  # (6, 3, 40, 40): resized to the judges' 32 px
    members = ensemble.predict_members(x)  # (2, 6, 3)
    assert members.shape == (2, 6, 3)
    assert torch.allclose(members[0], alone.predict(x), atol=1e-6)
    assert torch.allclose(ensemble.predict(x), (first.predict(x) + second.predict(x)) / 2, atol=1e-6)
    assert torch.allclose(ensemble.predict(x).sum(1), torch.ones(6))


def test_a_judge_file_from_before_ensembles_loads_as_one_judge(judge_file, tmp_path):
    """The earlier format (one judge's size, width, state_dict and summary at the top level) still loads."""
    judge = load_judge(judge_file).members[0]
    legacy = tmp_path / "legacy.pt"
    torch.save({"format": "vitcycle-judge", "size": judge.size, "width": judge.width, "classes": ["a", "b", "neither"],
                "state_dict": judge.state_dict(), "summary": {"seed": 7}}, legacy)
    loaded = load_judge(legacy)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert len(loaded.members) == 1 and loaded.summary == {"seed": 7}
    assert torch.allclose(loaded.predict(x), judge.predict(x))


def test_judge_combine_joins_files_and_refuses_what_would_mislead(judge_data, judge_file, ensemble_file, tmp_path, capsys):
    """combine: members of every file in order; refused with exit 2 and nothing written: --out onto an
    input, a file named twice, a judge that held out other test images, a seed named twice in fit."""
    out = tmp_path / "three.pt"
    assert main(["judge", "combine", str(judge_file), str(ensemble_file), "--out", str(out)]) == 0
    assert "an ensemble of 3 from 2 file(s)" in capsys.readouterr().out
    assert [m["seed"] for m in load_judge(out).summary] == [0, 0, 1]

    before = judge_file.read_bytes()
    assert main(["judge", "combine", str(judge_file), str(ensemble_file), "--out", str(judge_file), "--overwrite"]) == 2
    assert "is one of the judges to combine" in capsys.readouterr().err and judge_file.read_bytes() == before
    assert main(["judge", "combine", str(judge_file), str(judge_file), "--out", str(tmp_path / "twice.pt")]) == 2
    assert "named twice" in capsys.readouterr().err
    held_out = make_split(judge_data / "trainA", judge_data / "trainB", tmp_path / "split", n_test=5, seed=0)
    other, _ = fit_judge(judge_data / "trainA", judge_data / "trainB", holdout=held_out, seed=2, **{**JUDGE_ARGS, "steps": 2})
    other_file = save_judge(other, tmp_path / "other.pt")
    assert main(["judge", "combine", str(judge_file), str(other_file), "--out", str(tmp_path / "mixed.pt")]) == 2
    assert "other --holdout lists" in capsys.readouterr().err
    assert main(["judge", "fit", "--dir-a", str(judge_data / "trainA"), "--dir-b", str(judge_data / "trainB"),
                 "--out", str(tmp_path / "j.pt"), "--seed", "3", "3"]) == 2
    assert "names a seed twice" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("twice.pt", "mixed.pt", "j.pt"))


def test_eval_with_an_ensemble_reports_each_judges_share(judge_data, judge_file, ensemble_file, tiny_ckpt, tmp_path, capsys):
    """Each member's share in `target_by_judge` is what eval reports with that judge alone; verdicts are
    the ensemble mean's; the table gains the judges' range."""
    lists = make_split(judge_data / "valA", judge_data / "valB", tmp_path / "split", n_test=12, seed=0)
    second = save_judge(load_judge(ensemble_file).members[1], tmp_path / "second.pt")
    reports = {}
    for name, judge in (("ensemble", ensemble_file), ("first", judge_file), ("second", second)):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--ckpt", str(tiny_ckpt), "--test-a", str(lists[0]), "--test-b", str(lists[1]),
                     "--judge", str(judge), "--no-fid-kid", "--out", str(out), "--device", "cpu"]) == 0
        reports[name] = json.loads(out.read_text())
    printed = capsys.readouterr().out
    ensemble, first, second_report = reports["ensemble"], reports["first"], reports["second"]
    for direction in ("a2b", "b2a"):
        for method, row in ensemble["domain"][direction].items():
            alone = [r["domain"][direction][method] for r in (first, second_report)]
            assert row["target_by_judge"] == pytest.approx([r["target"] for r in alone])
            assert "target_by_judge" not in alone[0]  # a single judge's report is as before
        src = direction[0]
        assert ensemble["judge_accuracy"][src]["by_judge"] == pytest.approx(
            [r["judge_accuracy"][src]["accuracy"] for r in (first, second_report)])
    assert "| target, each judge (min–max) |" in printed and "an ensemble of 2 judges" in printed
    assert len(ensemble["settings"]["judge_training"]) == 2


def test_split_is_fixed_by_the_seed_and_never_overwritten(judge_data, tmp_path):
    list_a, list_b = make_split(judge_data / "trainA", judge_data / "trainB", tmp_path / "split", n_test=20, seed=3)
    held_a, held_b = read_file_list(list_a), read_file_list(list_b)
    assert len(held_a) == len(held_b) == 20 and all(f.parent.name == "trainA" for f in held_a)
    again = make_split(judge_data / "trainA", judge_data / "trainB", tmp_path / "again", n_test=20, seed=3)
    assert read_file_list(again[0]) != [] and [f.name for f in read_file_list(again[0])] == [f.name for f in held_a]
    assert make_split(judge_data / "trainA", judge_data / "trainB", tmp_path / "split", n_test=20, seed=3) == (list_a, list_b)
    with pytest.raises(DataError, match="already holds a different split"):
        make_split(judge_data / "trainA", judge_data / "trainB", tmp_path / "split", n_test=20, seed=4)
    assert [f.name for f in read_file_list(list_a)] == [f.name for f in held_a]  # kept


def test_excluded_files_are_never_trained_or_validated_on(judge_data, tmp_path):
    lists = make_split(judge_data / "trainA", judge_data / "trainB", tmp_path / "split", n_test=20, seed=0)
    dm = UnpairedImageDataModule(str(judge_data / "trainA"), str(judge_data / "trainB"), image_size=32,
                                 exclude=[str(p) for p in lists], num_workers=0)
    dm.setup("fit")
    used = {f.resolve() for s in (dm.train_set, dm.val_set) for side in s.files for f in side}
    held = {f.resolve() for p in lists for f in read_file_list(p)}
    assert len(held) == 40 and not used & held
    assert len(used) == 300 - 40


def test_file_list_naming_a_missing_file_is_refused(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text("# held out\nnope.png\n")
    with pytest.raises(DataError, match=f"file list {listed} names missing files: .*nope.png"):
        read_file_list(listed)


def test_layout_ssim_is_one_for_the_same_image_and_low_for_another():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(layout_ssim(x, x), torch.ones(3), atol=1e-5)
    assert (layout_ssim(x, torch.rand(3, 3, 64, 64) * 2 - 1) < 0.2).all()


def test_spread_is_zero_for_one_face_everywhere_and_grows_with_the_differences():
    torch.manual_seed(0)
    faces = torch.rand(6, 3, 64, 64) * 2 - 1
    assert spread(faces[:1].expand(6, -1, -1, -1)) == pytest.approx(0.0, abs=1e-9)  # a generator collapsed to one face
    assert spread(faces[:1]) != spread(faces[:1])  # NaN: no pair to compare
    half = faces[:1] + 0.5 * (faces - faces[:1])  # every face moved halfway towards the first
    assert spread(half) == pytest.approx(spread(faces) / 2, rel=0.05)
    two = torch.cat([-torch.ones(1, 3, 64, 64), torch.ones(1, 3, 64, 64)])  # black and white: gray 0 and 1
    assert spread(two) == pytest.approx(1.0, abs=1e-6)


def test_sharpness_is_lower_for_a_blurred_set_and_one_for_the_target_domain_itself():
    faces = torch.from_numpy(np.stack([smooth_image(64, 64, seed=i) for i in range(6)])).permute(0, 3, 1, 2)
    faces = faces.float() / 127.5 - 1  # (6, 3, 64, 64) in [-1, 1]: smooth colours
    edges = torch.zeros(6, 3, 64, 64)
    edges[..., ::8, :] = edges[..., :, ::8] = 0.8  # a grid of thin lines: edges, as outlined eyes are
    real = (faces * 0.5 + edges).clamp(-1, 1)  # (6, 3, 64, 64)
    blurred = F.avg_pool2d(real, 4).repeat_interleave(4, -1).repeat_interleave(4, -2)  # detail finer than 4 px lost
    assert sharpness(real, real) == 1.0  # the identity baseline on images of the target domain
    assert sharpness(blurred, real) < 0.3 < 1.0
    assert sharpness(F.avg_pool2d(real, 2).repeat_interleave(2, -1).repeat_interleave(2, -2), real) > sharpness(blurred, real)
    noise = (real + 0.5 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert sharpness(noise, real) > 1.0  # noise buys detail: eval shows the judge's "neither" beside it
    energy = high_frequency_energy(real)  # (6,) per image
    assert energy.shape == (6,) and (energy > 0).all()


def test_eval_reports_the_domain_score_with_baselines(judge_data, judge_file, tiny_ckpt, tmp_path, capsys):
    lists = make_split(judge_data / "valA", judge_data / "valB", tmp_path / "split", n_test=12, seed=0)
    out = tmp_path / "eval.json"
    grid = tmp_path / "grid.png"
    code = main(["eval", "--ckpt", str(tiny_ckpt), "--test-a", str(lists[0]), "--test-b", str(lists[1]),
                 "--judge", str(judge_file), "--no-fid-kid", "--out", str(out), "--grid", str(grid), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    for direction in ("a2b", "b2a"):
        rows = report["domain"][direction]
        assert set(rows) == {"model", "identity", "cartoon", "other_domain"}
        for row in rows.values():
            assert row["n"] == 12 and row["n_target"] + row["n_neither"] <= 12
            assert row["n_kept"] <= row["n_target"] and row["kept"] == pytest.approx(row["n_kept"] / 12)
            assert row["target"] == pytest.approx(row["n_target"] / 12)
            assert 0 <= row["neither"] <= 1 and -1 <= row["layout_ssim"] <= 1
        assert rows["identity"]["layout_ssim"] == pytest.approx(1.0, abs=1e-4)
        assert rows["identity"]["target"] <= 0.1  # the judge does not call an untranslated input the target
        assert rows["identity"]["n_kept"] == rows["identity"]["n_target"]  # the identity keeps every layout
        # real images of the target domain: judged as that domain exactly as often as the judge is right on them
        assert rows["other_domain"]["target"] == report["judge_accuracy"][direction[-1]]["accuracy"]
        assert 0 < rows["cartoon"]["layout_ssim"] < 0.99  # the filter changes the image, keeps some layout
        assert rows["other_domain"]["diversity"] == pytest.approx(1.0)  # the target domain's own images
        assert rows["other_domain"]["sharpness"] == pytest.approx(1.0)
        assert rows["model"]["sharpness"] > 0 and rows["identity"]["sharpness"] > 0
        assert 0 < rows["model"]["diversity"] and 0 < rows["identity"]["diversity"]
        assert math.isfinite(rows["model"]["cycle_l1"]) and rows["identity"]["cycle_l1"] is None
        assert f"| {direction} | model |" in printed and f"| {direction} | cartoon |" in printed
    acc = report["judge_accuracy"]
    assert acc["a"]["n"] == acc["b"]["n"] == 12 and acc["a"]["accuracy"] >= 0.75 and acc["b"]["accuracy"] >= 0.75
    assert "judge accuracy on the held-out real images: A" in printed
    assert "| target, layout kept |" in printed and "| diversity |" in printed and "| sharpness |" in printed
    assert read_image(grid).shape == (2 * 8 * 128, 3 * 128, 3)  # 8 rows per direction: input | translation | reconstruction


def test_eval_judges_translations_at_the_generators_size_not_enlarged(judge_data, judge_file, tiny_ckpt, tmp_path, monkeypatch):
    """64 px test images, a generator trained at 32 px: the judge sees its 32 px output (enlarging it to
    64 px and shrinking it back to the judge's size would blur artifacts away), and the 64 px inputs."""
    import cv2

    import vitcycle.quality.judge

    for side in ("A", "B"):
        for path in sorted((judge_data / f"val{side}").iterdir())[:3]:
            write_image(tmp_path / side / path.name, cv2.resize(read_image(path), (64, 64), interpolation=cv2.INTER_CUBIC))
    seen: list[set] = []
    to_tensor = vitcycle.quality.judge.arrays_to_tensor
    monkeypatch.setattr(vitcycle.quality.judge, "arrays_to_tensor", lambda imgs, size: seen.append({i.shape for i in imgs}) or to_tensor(imgs, size))
    assert main(["eval", "--ckpt", str(tiny_ckpt), "--test-a", str(tmp_path / "A"), "--test-b", str(tmp_path / "B"),
                 "--judge", str(judge_file), "--no-fid-kid", "--out", str(tmp_path / "e.json"), "--device", "cpu"]) == 0
    inputs, fakes = seen[0], seen[1]  # per batch: inputs, translations, reconstructions, cartoons
    assert inputs == {(64, 64, 3)} and fakes == {(32, 32, 3)}
    assert "processing size" in json.loads((tmp_path / "e.json").read_text())["settings"]["judged_size"]


def test_eval_without_fid_pairs_or_judge_has_nothing_to_report(judge_data, tiny_ckpt, tmp_path, capsys):
    lists = make_split(judge_data / "valA", judge_data / "valB", tmp_path / "split", n_test=4, seed=0)
    code = main(["eval", "--ckpt", str(tiny_ckpt), "--test-a", str(lists[0]), "--test-b", str(lists[1]), "--no-fid-kid"])
    assert code == 2
    assert "without FID/KID there is nothing to report: give a judge file" in capsys.readouterr().err


class _SaysTargets:
    """Judge double: every translation is called its target domain, every real image its own."""

    def to(self, device):
        return self

    def predict(self, images: torch.Tensor) -> torch.Tensor:  # (4n, 3, H, W): fake_b, fake_a, real_a, real_b
        n = len(images) // 4
        labels = torch.tensor([B] * n + [A] * n + [A] * n + [B] * n)  # (4n,)
        return torch.nn.functional.one_hot(labels, 3).float()  # (4n, 3) logits


def test_a_translation_counts_as_kept_only_if_it_keeps_the_layout(judge_file):
    """All translations judged the target domain; those that lost the input's layout (here the input
    with its brightness inverted, a mapping a GAN can settle on) are missing from domain_kept, not from domain."""
    module = tiny_cyclegan(judge=str(judge_file))
    module._judge = [_SaysTargets()]
    real = arrays_to_tensor([smooth_image(32, 32, seed=i) for i in range(8)], 32)  # (8, 3, 32, 32)
    inverted = -real[6:]  # (2, 3, 32, 32)
    translated = torch.cat([real[:6], inverted])  # 6 keep the layout exactly, 2 lose it
    assert layout_ssim(real[6:], inverted).max() < LAYOUT_FLOOR
    module._update_domain_score(real, real, {"fake_b": translated, "fake_a": real}, len(real))
    values = {name: float(metric.compute()) for name, metric in module.val_means.items() if metric.update_called}
    assert values["domain_ab"] == 1.0 and values["domain_ba"] == 1.0
    assert values["domain_kept_ab"] == pytest.approx(6 / 8)
    assert values["domain_kept_ba"] == 1.0


def test_eval_counts_as_kept_only_the_hits_that_keep_the_layout():
    """Eval's DomainScore: of 8 translations, 6 judged B; of those 6, 2 are the input inverted (layout
    lost); one of the 2 not judged B keeps the layout. kept = 4/8, target = 6/8, in the JSON and the table."""
    real = arrays_to_tensor([smooth_image(32, 32, seed=i) for i in range(8)], 32)  # (8, 3, 32, 32)
    outputs = real.clone()
    outputs[[1, 4]] = -real[[1, 4]]  # lost layout, judged B
    outputs[7] = -real[7]  # lost layout, judged neither
    assert layout_ssim(real[[1, 4, 7]], outputs[[1, 4, 7]]).max() < LAYOUT_FLOOR
    verdicts = torch.tensor([B, B, B, B, B, B, NEITHER, NEITHER])  # (8,)
    score = DomainScore(target=B)
    score.update(torch.nn.functional.one_hot(verdicts, 3).float(), real, outputs)
    row = score.compute()
    assert (row["n_target"], row["n_neither"], row["n_kept"]) == (6, 2, 4)
    assert row["kept"] == pytest.approx(4 / 8) and row["target"] == pytest.approx(6 / 8)
    report = {"domain": {"a2b": {"model": row}, "b2a": {}}, "judge_accuracy": {}}
    assert "| a2b | model | 75.0% (6/8) | 25.0% (2/8) | - | 50.0% (4/8) |" in format_domain_table(report)


def test_validation_logs_the_domain_score_every_epoch(tiny_data, judge_file, tmp_path):
    cli = cli_main(["fit", "--config", str(tiny_config(tmp_path, tiny_data, judge=str(judge_file)))])
    logged = cli.trainer.logged_metrics
    for name in ("domain_ab", "domain_ba", "neither_ab", "neither_ba", "layout_ssim_ab", "layout_ssim_ba"):
        assert 0.0 <= float(logged[f"val/{name}"]) <= 1.0, name
    assert float(logged["val/domain"]) == pytest.approx(0.5 * float(logged["val/domain_ab"] + logged["val/domain_ba"]))
    assert float(logged["val/domain_min"]) == pytest.approx(min(float(logged["val/domain_ab"]), float(logged["val/domain_ba"])))
    for d in ("ab", "ba"):
        assert 0.0 <= float(logged[f"val/domain_kept_{d}"]) <= float(logged[f"val/domain_{d}"])
    assert float(logged["val/domain_kept"]) == pytest.approx(
        0.5 * float(logged["val/domain_kept_ab"] + logged["val/domain_kept_ba"]))
    # the validation pairs are real images of each domain, which the judge mostly recognises
    assert float(logged["val/judge_acc_b"]) >= 0.75
    assert not any(k.startswith("_judge") for k in cli.model.state_dict())  # the judge stays out of checkpoints


def test_validation_with_an_ensemble_counts_the_mean_verdicts(judge_data, ensemble_file):
    """Given an ensemble file, validation's `val/domain_*` and `judge_acc_*` count the argmax of the
    members' mean probability, and no judge weight enters the module's checkpoint."""
    module = tiny_cyclegan(judge=str(ensemble_file))
    real_a, real_b = _folder(judge_data / "valA"), _folder(judge_data / "valB")  # (30, 3, 32, 32) each
    alpha = torch.linspace(0.0, 1.0, len(real_a)).view(-1, 1, 1, 1)
    fake_b = alpha * real_b + (1 - alpha) * real_a  # (30, 3, 32, 32): from a selfie to its anime face
    fake_a = fake_b.flip(0)
    module._update_domain_score(real_a, real_b, {"fake_b": fake_b, "fake_a": fake_a}, len(real_a))
    values = {name: float(m.compute()) for name, m in module.val_means.items() if m.update_called}
    ensemble = load_judge(ensemble_file)
    mean_share, member_shares = (float((ensemble.predict(fake_b).argmax(1) == B).float().mean()),
                                 (ensemble.predict_members(fake_b).argmax(-1) == B).float().mean(1).tolist())
    assert mean_share not in member_shares  # so that a count by one member alone would differ
    assert values["domain_ab"] == pytest.approx(mean_share)
    assert values["domain_ba"] == pytest.approx(float((ensemble.predict(fake_a).argmax(1) == A).float().mean()))
    assert values["judge_acc_a"] == pytest.approx(float((ensemble.predict(real_a).argmax(1) == A).float().mean()))
    assert not any("judge" in k for k in module.state_dict())


def test_judge_neither_class_catches_corrupted_targets(judge_data, judge_file):
    judge = load_judge(judge_file)
    real_b = _folder(judge_data / "valB")
    rng = torch.Generator().manual_seed(1)
    verdict = judge.predict(pixelate(real_b, rng)).argmax(1)
    assert (verdict == NEITHER).float().mean() >= 0.5
    assert np.isfinite(judge.predict(real_b).numpy()).all()


def test_eval_refuses_to_write_onto_its_inputs(judge_data, judge_file, tiny_ckpt, tmp_path, capsys):
    lists = make_split(judge_data / "valA", judge_data / "valB", tmp_path / "split", n_test=4, seed=0)
    test_image = read_file_list(lists[0])[0]
    for flag, target in (("--out", tiny_ckpt), ("--out", judge_file), ("--grid", test_image)):
        before = Path(target).read_bytes()
        code = main(["eval", "--ckpt", str(tiny_ckpt), "--test-a", str(lists[0]), "--test-b", str(lists[1]),
                     "--judge", str(judge_file), "--no-fid-kid", flag, str(target)])
        assert code == 2
        assert f"{flag} {target} is a file this command reads" in capsys.readouterr().err
        assert Path(target).read_bytes() == before


def test_eval_into_an_unwritable_place_is_one_line_and_replacing_is_said(judge_data, judge_file, tiny_ckpt, tmp_path, capsys):
    lists = make_split(judge_data / "valA", judge_data / "valB", tmp_path / "split", n_test=4, seed=0)
    args = ["eval", "--ckpt", str(tiny_ckpt), "--test-a", str(lists[0]), "--test-b", str(lists[1]),
            "--judge", str(judge_file), "--no-fid-kid"]
    for flag in ("--out", "--grid"):
        code = main([*args, flag, "/proc/vitcycle_eval.out"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].startswith(f"vitcycle eval: error: {flag} /proc/vitcycle_eval.out cannot be written")
    report = tmp_path / "report.json"
    report.write_text("{}")
    assert main([*args, "--out", str(report)]) == 2 and report.read_text() == "{}"  # not without --overwrite
    assert f"{report} exists already; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(report), "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"{report} exists and will be replaced" in err
    assert "eval a2b" not in err and "batch/s" not in err  # the progress bar is quiet off a terminal
    assert "domain" in json.loads(report.read_text())
