"""The ``cvae`` command line."""

import argparse
import sys

__all__ = ["main"]


def _demo(args):
    from .demo import run_demo

    run_demo(max_steps=args.max_steps, plot=None if args.no_plot else args.plot, random_state=args.seed,
             verbose=not args.quiet)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cvae",
        description="CompressionVAE: dimensionality reduction with a variational autoencoder.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser(
        "demo",
        help="embed scikit-learn's digits and compare with PCA",
        description="Fit a 2-D CompressionVAE on scikit-learn's bundled digits, print the validation loss "
        "and the 10-NN accuracy of the test embedding next to PCA's, and save an embedding plot "
        "when matplotlib is installed.",
        epilog="example: cvae demo --max-steps 2000 --plot digits.png",
    )
    demo.add_argument("--max-steps", type=int, default=None, help="training step budget (default: the estimator's)")
    demo.add_argument("--plot", default="digits_embedding.png", help="where to save the plot")
    demo.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    demo.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"cvae {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
