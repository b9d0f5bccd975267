"""The `vitcycle` command.

`fit`, `validate`, `test` and `predict` are LightningCLI subcommands (every hyperparameter is a
YAML key or a flag). The other subcommands (`data`, `translate`, `eval`, `export`) are plain
argparse commands that call library functions; heavy imports happen inside them so that
`vitcycle --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vitcycle.errors import VitcycleError

LIGHTNING_COMMANDS = {
    "fit": "train a CycleGAN (LightningCLI; `vitcycle fit --help` lists every option)",
    "validate": "run validation on a checkpoint (LightningCLI)",
    "test": "run the test loop on a checkpoint (LightningCLI)",
    "predict": "run prediction on a checkpoint (LightningCLI)",
}


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from vitcycle.synthetic import make_synthetic_dataset

    manifest = make_synthetic_dataset(
        args.out, n_train=args.n_train, n_val=args.n_val, size=args.size, seed=args.seed
    )
    print(f"wrote the built-in data set to {args.out} (pairs manifest: {manifest})")
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
    synth.add_argument("--n-train", type=int, default=800, help="training images per domain")
    synth.add_argument("--n-val", type=int, default=100, help="validation pairs")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    synth.set_defaults(func=_cmd_data_synth)
    return parser


def cli_main(args: Sequence[str] | None = None):
    """Run LightningCLI in-process (tests call this with a list of arguments)."""
    from vitcycle.training_cli import VitCycleCLI

    return VitCycleCLI(args=list(args) if args is not None else None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vitcycle` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        cli_main(argv)
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except VitcycleError as err:
        print(f"vitcycle {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
