"""The `vitcycle` command.

`fit`, `validate` and `pretrain` are LightningCLI subcommands (every hyperparameter is a
YAML key or a flag). The other subcommands (`data`, `judge`, `translate`, `eval`, `export`) are plain
argparse commands that call library functions; heavy imports happen inside them so that
`vitcycle --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from vitcycle.errors import JudgeError, TrainingInterrupted, VitcycleError

DETECTOR_HELP = "face detector: auto (MTCNN landmarks with vitcycle[faces], else Haar), mtcnn or haar"

LIGHTNING_COMMANDS = {
    "fit": "train a CycleGAN (LightningCLI; `vitcycle fit --help` lists every option)",
    "validate": "run validation of a checkpoint (LightningCLI; with --config and --ckpt_path)",
    "pretrain": "pretrain a generator by masked-patch inpainting (LightningCLI; `vitcycle pretrain --help`)",
}


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from vitcycle.data.synthetic import make_synthetic_dataset

    manifest = make_synthetic_dataset(
        args.out, n_train=args.n_train, n_val=args.n_val, size=args.size, seed=args.seed
    )
    print(f"wrote the built-in data set to {args.out} (pairs manifest: {manifest})")
    return 0


def _cmd_data_split(args: argparse.Namespace) -> int:
    from vitcycle.data.splits import make_split

    list_a, list_b = make_split(args.dir_a, args.dir_b, args.out, n_test=args.n_test, seed=args.seed)
    print(f"held-out test split: {list_a} and {list_b} ({args.n_test} images each, seed {args.seed})")
    return 0


def _cmd_data_align(args: argparse.Namespace) -> int:
    from vitcycle.console import one_line_warnings
    from vitcycle.faces.detect import face_detector
    from vitcycle.faces.folder import align_folder

    out = Path(args.output)
    _overwrite_rule(args, sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [])
    with one_line_warnings("vitcycle data align"):
        detector = face_detector(args.detector)
        geometry = {k: v for k, v in (("eye_line", args.eye_line), ("eye_distance", args.eye_distance)) if v is not None}
        summary = align_folder(args.input, args.output, detector, size=args.size, all_faces=args.all_faces, **geometry)
    print(f"wrote {len(summary.written)} aligned {args.size}x{args.size} face(s) to {args.output} ({detector.name}); "
          f"no face in {len(summary.no_face)}, skipped {len(summary.skipped)}")
    if not summary.written:
        raise VitcycleError(f"no face was found in {args.input}; nothing written")
    return 0


def _new_judge_file(args: argparse.Namespace) -> Path:
    """`--out` of a judge command, refused before any work if it exists and `--overwrite` is not given."""
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise JudgeError(f"--out {out} exists already; pass --overwrite to replace it, or choose another --out")
    return out


def _cmd_judge_fit(args: argparse.Namespace) -> int:
    import json

    from vitcycle.quality.judge import JudgeEnsemble, fit_judge, save_judge

    out = _new_judge_file(args)
    if len(set(args.seed)) < len(args.seed):
        raise JudgeError(f"--seed {' '.join(map(str, args.seed))} names a seed twice; the same seed trains the same judge")
    members = []
    for seed in args.seed:
        judge, summary = fit_judge(
            args.dir_a, args.dir_b, holdout=args.holdout, size=args.size, width=args.width, steps=args.steps,
            batch_size=args.batch_size, lr=args.lr, seed=seed,
        )
        acc = summary["val_accuracy"]
        print(json.dumps(summary["n_train"]), f"training images; {summary['seconds']} s")
        print(
            f"judge (seed {seed}): accuracy on its {summary['n_val']['a']}+{summary['n_val']['b']} validation images: "
            f"A {acc['a']:.1%}, B {acc['b']:.1%}, neither (made from them) {acc['neither']:.1%}"
        )
        members.append(judge)
    save_judge(JudgeEnsemble(members), out, overwrite=args.overwrite)
    print(f"judge written to {out}" + (f": an ensemble of {len(members)}, seeds {' '.join(map(str, args.seed))}" if len(members) > 1 else ""))
    return 0


def _cmd_judge_combine(args: argparse.Namespace) -> int:
    from vitcycle.quality.judge import JudgeEnsemble, load_judge, save_judge

    out = _new_judge_file(args)
    inputs = [Path(j).resolve() for j in args.judges]
    if out.resolve() in inputs:
        raise JudgeError(f"--out {out} is one of the judges to combine; write the ensemble to another file")
    if len(set(inputs)) < len(inputs):
        raise JudgeError("a judge file is named twice; name each file once")
    members, first_holdout = [], None
    for path in args.judges:
        for judge in load_judge(path).members:
            holdout = sorted(judge.summary.get("holdout", []))
            first_holdout = holdout if first_holdout is None else first_holdout
            if holdout != first_holdout:  # a judge that trained on another's test images would flatter it
                raise JudgeError(f"{path} was trained with other --holdout lists ({holdout}) than {args.judges[0]} "
                                 f"({first_holdout}); combine judges that held out the same test images")
            members.append(judge)
    save_judge(JudgeEnsemble(members), out, overwrite=args.overwrite)
    print(f"judge written to {out}: an ensemble of {len(members)} from {len(args.judges)} file(s)")
    return 0


@contextlib.contextmanager
def _flag_hint(error: type[VitcycleError], hint: str) -> Iterator[None]:
    """The library names no CLI flag: for `error`, the command adds the flags that fix it."""
    try:
        yield
    except error as err:
        raise error(f"{err} ({hint})") from None


def _overwrite_rule(args: argparse.Namespace, existing: Sequence[object]) -> None:
    """The one overwrite rule of every command: outputs that exist already are replaced (atomically, once
    complete) only with `--overwrite`, and then said before the work; without it, one line and nothing done."""
    if not existing:
        return
    more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
    if not getattr(args, "overwrite", False):
        raise VitcycleError(f"{existing[0]}{more} exists already; pass --overwrite to replace it, or choose another output")
    print(f"{existing[0]}{more} exists and will be replaced", file=sys.stderr)


def _cmd_translate(args: argparse.Namespace) -> int:
    from vitcycle.console import one_line_warnings
    from vitcycle.data.imageio import read_image
    from vitcycle.faces.detect import face_detector
    from vitcycle.inference.files import PathTranslator, plan_translation
    from vitcycle.inference.translator import Translator

    if args.paste_back and not args.face_crop:
        raise VitcycleError("--paste-back only applies with --face-crop; add --face-crop or drop --paste-back")
    if args.all_faces and not args.paste_back:
        raise VitcycleError("--all-faces pastes every face back into the image; add --face-crop --paste-back")
    if args.size is not None and args.size < 1:
        raise VitcycleError(f"--size {args.size} must be a positive number of pixels")
    with one_line_warnings("vitcycle translate"):
        jobs = plan_translation(args.input, args.output, ext=args.ext)  # path errors before the model loads
        read = {Path(p).expanduser().resolve(): flag for flag, p in (("--ckpt", args.ckpt), ("--style", args.style)) if p}
        for job in jobs:  # through any link: an output must never be the checkpoint or style image in use
            if job.dst.resolve() in read:
                raise VitcycleError(f"output {job.dst} is the {read[job.dst.resolve()]} file this command reads "
                                    "(through a link); choose another output path")
        _overwrite_rule(args, [job.dst for job in jobs if job.dst.exists()])
        style = read_image(args.style) if args.style else None
        translator = Translator.from_checkpoint(
            args.ckpt, direction=args.direction, use_ema=not args.no_ema, device=args.device
        )
        runner = PathTranslator(
            translator,
            size=args.size,
            batch_size=args.batch_size,
            faces=face_detector(args.face_detector) if args.face_crop else None,
            paste_back=args.paste_back,
            all_faces=args.all_faces,
            style=style,
            grid=args.grid,
            **({"max_pixels": args.max_pixels} if args.max_pixels is not None else {}),
        )
        summary = runner.run(jobs)
    print(f"translated {len(summary.translated)}, skipped {len(summary.skipped)} (output: {args.output})")
    if not summary.translated:
        raise VitcycleError(f"nothing was translated: all {len(summary.skipped)} inputs were skipped (see the warnings above)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitcycle.console import one_line_warnings
    from vitcycle.data.imageio import find_images
    from vitcycle.errors import InceptionWeightsError
    from vitcycle.outputs import check_outputs
    from vitcycle.quality.metrics import format_report, run_eval, write_report

    out = Path(args.out) if args.out else Path(args.ckpt).with_suffix(".eval.json")
    tests = [p for folder in (args.test_a, args.test_b) if Path(folder).exists() for p in [Path(folder), *find_images(folder)]]
    read = [args.ckpt, *tests, *(p for p in (args.judge, args.pairs) if p)]
    _overwrite_rule(args, check_outputs({"--out": out, "--grid": args.grid}, read))  # before any work
    with one_line_warnings("vitcycle eval"), _flag_hint(InceptionWeightsError, "pass --inception-weights PATH, or --no-fid-kid"):
        report = run_eval(
            args.ckpt,
            args.test_a,
            args.test_b,
            pairs=args.pairs,
            inception_weights=args.inception_weights,
            batch_size=args.batch_size,
            device=args.device,
            kid_subset_size=args.kid_subset_size,
            size=args.size,
            use_ema=not args.no_ema,
            fid_kid=not args.no_fid_kid,
            grid=args.grid,
            judge=args.judge,
        )
    if not args.no_fid_kid or report["identity"]["n"]:  # FID/KID or paired metrics were computed
        print(format_report(report))
        print(f"paired metrics: {report['settings']['paired_ranges']}")
    if "domain" in report:
        from vitcycle.quality.domain_score import format_domain_table

        print(format_domain_table(report))
    print(f"report written to {write_report(report, out)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from vitcycle.console import one_line_warnings
    from vitcycle.inference.export import EXTENSIONS, default_output, export_generator
    from vitcycle.inference.translator import Translator
    from vitcycle.outputs import check_outputs

    with one_line_warnings("vitcycle export"):
        out = args.out or default_output(args.ckpt, args.format, args.direction)
        existing = check_outputs({"--out": out}, [args.ckpt])  # before any work
        allowed = EXTENSIONS[args.format]
        if not str(out).lower().endswith(allowed):  # an export never lands on an image or other file by mistake
            raise VitcycleError(f"--out {out}: a {args.format} export must end in {' or '.join(allowed)}")
        _overwrite_rule(args, existing)
        translator = Translator.from_checkpoint(args.ckpt, direction=args.direction, use_ema=not args.no_ema, device="cpu")
        result = export_generator(
            translator, out, fmt=args.format, size=args.size, dynamic=args.dynamic, atol=args.atol
        )
    shapes = ", ".join("x".join(map(str, s)) for s in result["checked_shapes"])
    size = result["size"]
    if args.format == "onnx" and args.dynamic:
        layout = "(B, 3, H, W), H and W multiples of the patch size"
    else:
        layout = f"({'B' if args.dynamic else 1}, 3, {size}, {size})"
    print(
        f"exported {args.direction} generator to {result['path']} ({args.format}); input 'image' and output "
        f"'translated' are {layout} in [-1, 1]; max abs difference to PyTorch {result['max_abs_diff']:.2e} on {shapes}"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from vitcycle.inference.serve import TranslationService, make_server

    if args.max_upload_mb <= 0:
        raise VitcycleError(f"--max-upload-mb {args.max_upload_mb} must be positive")
    service = TranslationService(args.ckpt, device=args.device, max_bytes=int(args.max_upload_mb * 1e6))
    try:
        server = make_server(service, args.host, args.port)
    except OSError as err:
        raise VitcycleError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); try another --port") from None
    host, port = server.server_address[:2]
    print(f"serving {service.name} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of the non-Lightning subcommands (Lightning ones are listed for --help)."""
    parser = argparse.ArgumentParser(
        prog="vitcycle",
        description="Unpaired image-to-image translation with Vision-Transformer CycleGANs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in LIGHTNING_COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)

    data = sub.add_parser("data", help="make or inspect data sets")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    synth = data_sub.add_parser("synth", help="write the built-in two-domain data set with hidden pairs")
    synth.add_argument("--out", required=True, help="output folder (trainA, trainB, valA, valB, pairs_val.csv)")
    synth.add_argument("--n-train", type=int, default=900, help="training images per domain")
    synth.add_argument("--n-val", type=int, default=100, help="validation pairs")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    synth.set_defaults(func=_cmd_data_synth)
    split = data_sub.add_parser("split", help="hold out a fixed, seeded test split of two folders (file lists)")
    split.add_argument("--dir-a", required=True, help="folder of domain-A images")
    split.add_argument("--dir-b", required=True, help="folder of domain-B images")
    split.add_argument("--out", required=True, help="folder for test_a.txt and test_b.txt")
    split.add_argument("--n-test", type=int, default=200, help="held-out images per domain")
    split.add_argument("--seed", type=int, default=0, help="same seed and folders, same split")
    split.set_defaults(func=_cmd_data_split)
    align = data_sub.add_parser("align", help="aligned face crops of a photo folder, to train on (eyes level and placed)")
    align.add_argument("--input", required=True, help="a photo or a folder of photos (recursive)")
    align.add_argument("--output", required=True, help="output folder (mirrors the input folder)")
    align.add_argument("--size", type=int, default=256, help="side of the square crops in pixels")
    align.add_argument("--all-faces", action="store_true", help="every face (name_face2.jpg, ...), not only the largest")
    align.add_argument("--detector", default="auto", help=DETECTOR_HELP)
    align.add_argument("--eye-line", type=float, default=None,
                       help="eye height as a share of the side, from the top (default: as in the U-GAT-IT selfies)")
    align.add_argument("--eye-distance", type=float, default=None,
                       help="distance between the eye centres as a share of the side (default: as in the U-GAT-IT selfies)")
    align.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    align.set_defaults(func=_cmd_data_align)

    judge = sub.add_parser("judge", help="the domain judge of the offline real-data score")
    judge_sub = judge.add_subparsers(dest="judge_command", metavar="JUDGE_COMMAND", required=True)
    jf = judge_sub.add_parser("fit", help="train a judge (A / B / neither) from scratch on two folders")
    jf.add_argument("--dir-a", required=True, help="folder of domain-A training images")
    jf.add_argument("--dir-b", required=True, help="folder of domain-B training images")
    jf.add_argument("--out", required=True, help="judge file to write (e.g. judge.pt)")
    jf.add_argument("--holdout", nargs="*", default=[], metavar="LIST", help="file lists never trained on (test_a.txt test_b.txt)")
    jf.add_argument("--size", type=int, default=64, help="side every judged image is resized to (power of two)")
    jf.add_argument("--width", type=int, default=32, help="channels of the first conv stage")
    jf.add_argument("--steps", type=int, default=800, help="training steps")
    jf.add_argument("--batch-size", type=int, default=32, help="images per class and step")
    jf.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    jf.add_argument("--seed", type=int, nargs="+", default=[0],
                    help="same seed, same judge (on the same machine); several seeds train an ensemble in one file, "
                         "whose mean probability judges (eval also reports each judge's verdicts)")
    jf.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    jf.set_defaults(func=_cmd_judge_fit)
    jc = judge_sub.add_parser("combine", help="join judge files (e.g. other seeds, trained apart) into one ensemble file")
    jc.add_argument("judges", nargs="+", metavar="JUDGE", help="judge files of `vitcycle judge fit`")
    jc.add_argument("--out", required=True, help="ensemble file to write")
    jc.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    jc.set_defaults(func=_cmd_judge_combine)

    tr = sub.add_parser("translate", help="translate images, folders or videos with a checkpoint")
    tr.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) written by `vitcycle fit`")
    tr.add_argument("--input", required=True, help="an image, a video (.mp4 .avi .mov .mkv .webm) or a folder (recursive)")
    tr.add_argument("--output", required=True, help="output file, or folder (a folder input is mirrored into it)")
    tr.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="a2b uses gen_ab, b2a gen_ba")
    tr.add_argument("--size", type=int, default=None, help="processing size of the longer side (default: training size)")
    tr.add_argument("--batch-size", type=int, default=8, help="images or video frames per forward pass")
    tr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    tr.add_argument("--face-crop", action="store_true",
                    help="translate the largest face, aligned as the training faces are (eyes level; see `data align`)")
    tr.add_argument("--paste-back", action="store_true", help="with --face-crop: blend the face back into the image")
    tr.add_argument("--all-faces", action="store_true", help="with --face-crop --paste-back: every face, not the largest")
    tr.add_argument("--face-detector", default="auto", help=DETECTOR_HELP)
    tr.add_argument("--no-ema", action="store_true", help="use the raw generator weights instead of the EMA ones")
    tr.add_argument("--style", metavar="REF", default=None, help="style reference image (generators with a style encoder)")
    tr.add_argument("--grid", action="store_true", help="write input | output side by side")
    tr.add_argument("--max-pixels", type=float, default=None, help="skip inputs with more pixels than this (default 40e6)")
    tr.add_argument("--ext", default=None, help="write images with this extension (e.g. png) instead of the input's")
    tr.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    tr.set_defaults(func=_cmd_translate)

    ev = sub.add_parser("eval", help="FID/KID, paired metrics and the judge's domain score of a checkpoint")
    ev.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) written by `vitcycle fit`")
    ev.add_argument("--test-a", required=True, help="folder of domain-A test images (recursive), or a .txt file list")
    ev.add_argument("--test-b", required=True, help="folder of domain-B test images (recursive), or a .txt file list")
    ev.add_argument("--pairs", default=None, help="CSV a,b of aligned pairs (default: pairs_val.csv beside the test folders)")
    ev.add_argument("--out", default=None, help="JSON report (default: <ckpt>.eval.json beside the checkpoint)")
    ev.add_argument("--inception-weights", default=None, help="local weights-inception-2015-12-05-6726825d.pth (offline)")
    ev.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    ev.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (capped at the set size)")
    ev.add_argument("--size", type=int, default=None, help="processing size (default: training size)")
    ev.add_argument("--no-ema", action="store_true", help="use the raw generator weights instead of the EMA ones")
    ev.add_argument(
        "--no-fid-kid", "--paired-only", dest="no_fid_kid", action="store_true",
        help="skip FID/KID (no Inception weights needed): paired metrics and/or the domain score only",
    )
    ev.add_argument("--judge", default=None, metavar="FILE", help="judge of `vitcycle judge fit`: adds the domain score and baselines")
    ev.add_argument(
        "--grid", default=None, metavar="PNG",
        help="also write a PNG of samples: input | translation | target (paired) or | reconstruction (unpaired)",
    )
    ev.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    ev.set_defaults(func=_cmd_eval)

    ex = sub.add_parser("export", help="export a generator to ONNX or TorchScript, checked against PyTorch")
    ex.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) written by `vitcycle fit`")
    ex.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="onnx needs vitcycle[export]")
    ex.add_argument("--size", type=int, default=None, help="square export size, a multiple of the patch size (default: training size)")
    ex.add_argument("--dynamic", action="store_true", help="onnx: free batch/height/width; torchscript: free batch")
    ex.add_argument("--out", default=None, help="output file (default: <ckpt>.<direction>.onnx / .torchscript.pt)")
    ex.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="a2b exports gen_ab, b2a gen_ba")
    ex.add_argument("--no-ema", action="store_true", help="export the raw generator weights instead of the EMA ones")
    ex.add_argument("--atol", type=float, default=1e-3, help="largest allowed difference to PyTorch (default 1e-3)")
    ex.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    ex.set_defaults(func=_cmd_export)

    sv = sub.add_parser("serve", help="a web page to try a checkpoint in a browser (and its HTTP API)")
    sv.add_argument("--ckpt", required=True, help="checkpoint (.ckpt) written by `vitcycle fit`")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=7860, help="port (0: any free one)")
    sv.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    sv.add_argument("--max-upload-mb", type=float, default=20, help="larger uploads are refused (default 20)")
    sv.set_defaults(func=_cmd_serve)
    return parser


def cli_main(args: Sequence[str] | None = None):
    """Run LightningCLI in-process (tests call this with a list of arguments).

    `pretrain ...` runs the pretraining CLI's `fit`; anything else is a CycleGAN command.
    """
    import warnings

    from vitcycle.training.cli import PretrainCLI, VitCycleCLI

    given = list(args) if args is not None else sys.argv[1:]
    if given and given[0] == "pretrain":
        with warnings.catch_warnings():  # the arguments are sys.argv's, with "fit" for "pretrain"
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            return PretrainCLI(args=["fit", *given[1:]])
    return VitCycleCLI(args=list(args) if args is not None else None)


def _one_line(err: VitcycleError) -> str:
    """The error's message. A DataLoader worker's error comes back as "Caught DataError in
    DataLoader worker process 0. Original Traceback ...": its last line holds the message."""
    text = str(err)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]  # "vitcycle.errors.DataError: <message>"
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vitcycle` console script."""
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        try:
            cli_main(None if from_sys_argv else argv)
        except VitcycleError as err:
            print(f"vitcycle {argv[0]}: error: {_one_line(err)}", file=sys.stderr)
            return 2
        except TrainingInterrupted as err:  # a stop signal: last.ckpt saved; the exit code of that signal
            print(f"vitcycle {argv[0]}: {err}", file=sys.stderr)
            return 128 + err.signum
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except VitcycleError as err:
        print(f"vitcycle {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
