"""The ``cvae`` command line: fit, transform, inverse-transform, sample, plot, info, demo.

User mistakes (a missing file, a wrong number of features, a bad parameter) end with one
line on standard error and exit status 2, never a traceback.
"""

import argparse
import json
import logging
import os
import sys
import textwrap
import warnings
from pathlib import Path

__all__ = ["EXIT_INTERRUPTED", "build_parser", "main"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT

# What a user can cause and mend: bad values, missing or unwritable files (OSError covers
# permissions, read-only file systems, link loops, folders where files were expected),
# a log directory another fit holds, a missing extra, compile=True without a compiler. Any
# other exception is a bug, and shows its traceback.
USER_ERRORS = (ValueError, OSError, ImportError)
# ... and these, from modules that import torch, which the command line loads only when needed.
_USER_ERROR_NAMES = {"cvae.training.logdir": "LogDirLocked", "cvae.training.trainer": "CompilerNotFound"}


def _user_errors():
    """The exception classes that are a user's mistake, not a bug, among those loaded."""
    loaded = [getattr(sys.modules[module], name) for module, name in _USER_ERROR_NAMES.items()
              if module in sys.modules]
    return USER_ERRORS + tuple(loaded)


# A .npy or .h5ad INPUT up to this size is read into memory, where placement="auto" keeps the
# training rows and batches are gathered, not read; a larger one, or a directory, is streamed.
IN_MEMORY_BYTES = 2**30


def _data(path, key=None, label_column=None, layer=None):
    """``(data, n_samples)``: a directory, or a .npy or .h5ad file larger than
    ``IN_MEMORY_BYTES``, as its path, to be streamed; other files read into memory (a
    sparse .npz as a CSR matrix, an .h5ad file as an AnnData)."""
    from .files import read_array
    from .data.inputs import is_streamed, open_source
    from .data.sources import file_format

    if is_streamed(path) and label_column is None:
        file = Path(path).expanduser()
        if file.is_dir() or file.stat().st_size > IN_MEMORY_BYTES:
            return path, open_source(path, layer=layer).n_samples
        if file_format(file) == "h5ad":
            from .data.adata import read_h5ad

            adata = read_h5ad(file)
            return adata, adata.n_obs
    X, _ = read_array(path, key=key, label_column=label_column)
    return X, X.shape[0]


# fit options that are estimator parameters of the same name (given ones only: the rest keep
# the estimator's defaults on a new run, and the saved values on --resume)
_FIT_PARAMS = {"seed": "random_state", **{name: name for name in (
    "n_components", "hidden_layer_sizes", "iaf_flow_length", "likelihood", "normalize", "beta", "batch_size",
    "max_steps", "learning_rate_init", "validation_fraction", "device", "precision", "layer")}}


def _fit(args):
    from .estimator import CompressionVAE
    from .files import read_array

    given = {param: getattr(args, option) for option, param in _FIT_PARAMS.items() if getattr(args, option) is not None}
    twice = sorted(given.keys() & args.param.keys()) + (["logdir"] if "logdir" in args.param else [])
    if twice:
        raise ValueError(f"{twice[0]} is given both by its own option and by --param; give it once.")
    given.update(args.param)
    if args.tensorboard:
        given["tensorboard"] = True
    if args.resume:
        vae = CompressionVAE.load(args.logdir).set_params(**{"verbose": not args.quiet, **given, "warm_start": True})
    else:
        vae = CompressionVAE(**{"logdir": args.logdir, "verbose": not args.quiet, **given})
    label_column = args.label_column
    if _labels_are_a_csv_column(args):  # --labels NAME of a CSV INPUT: its column, as an .h5ad obs column
        label_column = args.labels
        X, labels = read_array(args.input, label_column=label_column)
        n_samples = X.shape[0]
    else:
        X, n_samples = _data(args.input, args.key, label_column, vae.layer)
        labels = _fit_labels(args)
    X_valid = None
    if args.valid is not None:
        X_valid, _ = _data(args.valid, args.key, label_column, vae.layer)
    try:
        vae.fit(X, labels, X_valid=X_valid, covariates=args.covariates)
    except FileExistsError:
        raise FileExistsError(
            f"{args.logdir!r} already holds a fitted model: add --resume to continue it (with a larger --max-steps "
            "once it has finished), or choose a new --logdir."
        ) from None
    print(f"fitted {n_samples} samples x {vae.n_features_in_} features -> {vae.n_components} components: "
          f"{vae.n_steps_} steps ({vae.stop_reason_}) on {vae.device_}, "
          f"best validation loss {vae.best_validation_loss_:.4g}; saved in {vae.logdir}")
    # stopped by Ctrl-C, the model kept: the status a shell expects of an interrupted command
    return EXIT_INTERRUPTED if vae.stop_reason_ == "interrupted" else 0


def _labels_are_a_csv_column(args):
    from .data.sources import file_format

    return (args.labels is not None and args.label_column is None and file_format(args.input) == "csv"
            and not Path(args.labels).expanduser().exists())


def _fit_labels(args):
    """``--labels`` as fit takes it: a path or an obs column, or the array ``--labels-key``
    names in an .npz archive."""
    from .data.sources import file_format
    from .files import read_labels

    if args.labels is None:
        if args.labels_key is not None:
            raise ValueError("--labels-key names an array of the --labels archive; give --labels too.")
        return None
    if args.labels_key is not None:
        return read_labels(args.labels, key=args.labels_key)
    same = Path(args.labels).expanduser().resolve() == Path(args.input).expanduser().resolve()
    if same and file_format(args.labels) == "npz":
        raise ValueError(f"--labels names INPUT's archive {args.labels!r}: say which of its arrays holds the "
                         "labels with --labels-key.")
    return args.labels


def _write_output(vae, method, data, output, covariates=None):
    """Write ``vae.<method>(data)`` (under ``covariates``, for a model that has them); a .npy
    output is written a chunk at a time."""
    from .data.sources import file_format
    from .files import transform_to_npy, write_array

    if file_format(output, directories=False) == "npy":
        transform_to_npy(vae, data, output, method=method, covariates=covariates)
    else:
        write_array(output, getattr(vae, method)(data, covariates=covariates), _columns(vae, method))


def _transform(args):
    vae = _load(args)
    X, n_samples = _data(args.input, args.key, args.label_column, vae.layer)
    _write_output(vae, "transform", X, args.output, args.covariates)
    print(f"wrote the {n_samples} x {vae.n_components} embedding to {args.output}")
    return 0


def _predict(args):
    from .files import write_array

    vae = _load(args)
    if args.label_transfer is not None:
        vae.set_params(label_transfer=args.label_transfer)
    X, n_samples = _data(args.input, args.key, args.label_column, vae.layer)
    if args.proba:
        proba = vae.predict_proba(X, covariates=args.covariates)
        write_array(args.output, proba, [str(c) for c in vae.classes_])
        print(f"wrote the {n_samples} x {proba.shape[1]} class probabilities to {args.output}")
    else:
        write_array(args.output, vae.predict(X, covariates=args.covariates), ["label"])
        print(f"wrote the {n_samples} predicted labels to {args.output}")
    return 0


def _inverse_transform(args):
    vae = _load(args)
    Z, n_samples = _data(args.input, args.key)
    _write_output(vae, "inverse_transform", Z, args.output, args.covariates)
    print(f"wrote {n_samples} decoded samples x {vae.n_features_in_} features to {args.output}")
    return 0


def _sample(args):
    from .files import write_array

    vae = _load(args)
    write_array(args.output, vae.sample(args.n_samples, random_state=args.seed, covariates=args.covariates),
                _columns(vae, "sample"))
    print(f"wrote {args.n_samples} generated samples x {vae.n_features_in_} features to {args.output}")
    return 0


def _export(args):
    vae = _load(args)
    path = vae.export(args.output, part=args.part)
    print(f"wrote the {args.part} of {args.logdir} to {path}")
    return 0


def _plot(args):
    from . import plotting
    from .files import read_array, read_labels

    if args.kind == "embedding" and args.input is None:
        raise ValueError("plot --kind embedding needs the data to embed: give INPUT.")
    if args.labels is not None and args.label_column is not None:
        raise ValueError("give labels either as --labels FILE or as --label-column, not both.")
    vae = _load(args)
    if args.kind == "history":
        plotting.plot_history(vae, filename=args.output)
    elif args.kind == "latent-grid":
        shape = args.image_shape or plotting.square_image_shape(vae.n_features_in_)
        if shape is None:
            raise ValueError(f"{vae.n_features_in_} features are not a square image: give --image-shape HEIGHTxWIDTH.")
        X = None if args.input is None else read_array(args.input, key=args.key, label_column=args.label_column)[0]
        plotting.plot_latent_grid(vae, shape, grid_size=args.grid_size, X=X, filename=args.output)
    else:
        X, labels = read_array(args.input, key=args.key, label_column=args.label_column)
        if args.labels is not None:
            labels = read_labels(args.labels, key=args.labels_key)
        title = Path(args.input).name + ("" if args.key is None else f", {args.key}")
        plotting.plot_embedding(vae.transform(X), labels=labels, filename=args.output, title=title)
    print(f"wrote {args.output}")
    return 0


def _info(args):
    vae = _load(args)
    info = _describe(vae, args.logdir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for section, fields in info.items():
        print(f"{section}:")
        for key, value in fields.items():
            print(f"  {key}: {value}")
    return 0


def _demo(args):
    from ._demo import run_demo

    run_demo(max_steps=args.max_steps, plot=None if args.no_plot else args.plot, random_state=args.seed,
             verbose=not args.quiet)
    return 0


def _load(args):
    from .estimator import CompressionVAE

    return CompressionVAE.load(args.logdir, device=args.device)


def _columns(vae, method):
    """CSV header of ``method``'s output: the embedding's names, or the data's features."""
    if method == "transform":
        return vae.get_feature_names_out()
    names = getattr(vae, "feature_names_in_", None)
    return names if names is not None else [f"x{i}" for i in range(vae.n_features_in_)]


def _describe(vae, logdir):
    history = vae.history_
    last = history[-1] if history else {}
    files = {p.name: p.stat().st_size for p in sorted(Path(logdir).iterdir()) if p.is_file()}
    return {
        "model": {
            "n_features_in": vae.n_features_in_,
            "n_components": vae.spec_.model.n_latent,
            "hidden_layer_sizes": vae.hidden_layer_sizes_,
            "iaf_flow_length": vae.spec_.model.n_flows,
            "likelihood": vae.likelihood_
            + ("" if vae.spec_.upper is None else f" of the values / {vae.spec_.upper:g}"),
            "normalize": vae.spec_.normalize,
        },
        "training": {
            "steps": vae.n_steps_,
            "max_steps": vae.max_steps_,
            "neighbor_weight": vae.neighbor_weight_,
            "precision": vae.precision_,
            "cpu_threads": vae.n_threads_,
            "placement": "encoder" if vae._placement_reference() is None else "neighbors",
            "stop_reason": vae.stop_reason_,
            "best_validation_loss": vae.best_validation_loss_,
            "last_learning_rate": last.get("learning_rate"),
            "training_seconds": round(last.get("elapsed_seconds", 0.0), 1),
            "validations": len(history),
        },
        "device": {"saved_parameter": str(vae.device), "loaded_on": str(vae.device_)},
        "parameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(vae.get_params().items())},
        "files": {name: f"{size:,} bytes" for name, size in files.items()},
    }


def _key_value(text):
    """``NAME=VALUE`` with VALUE parsed as JSON when it is JSON (numbers, lists, true...)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value


def _sizes(text):
    try:
        return tuple(int(s) for s in text.replace("x", ",").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_command(commands, name, help, description, examples):
    return commands.add_parser(
        name,
        help=help,
        description=description,
        epilog="examples:\n" + textwrap.indent("\n".join(examples), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_covariates(parser, help_text):
    parser.add_argument("--covariates", metavar="FILE|COLUMNS", default=None, help=help_text)


def _add_input(parser, labels=True):
    parser.add_argument("input", metavar="INPUT",
                        help="a .npy, .npz (arrays or a sparse matrix), .csv or .h5ad file, or a directory of .npy "
                        "files")
    parser.add_argument("--key", help="array to read from a .npz archive (default: its only array, or X)")
    if labels:
        parser.add_argument("--label-column", help="column (index, or name in a CSV header) that holds labels, "
                            "not features; it is left out")


def _add_logdir(parser):
    parser.add_argument("logdir", metavar="LOGDIR", help="log directory of a fitted model")
    parser.add_argument("--device", default=None, help="where to run: auto, cpu, cuda... (default: as saved)")


def _add_fit_command(commands):
    fit = _add_command(
        commands, "fit", "fit a model and save it in a log directory",
        "Fit a CompressionVAE on INPUT and save parameters, normalization, history and checkpoints in "
        "--logdir. Ctrl-C stops training and keeps the best model so far.",
        ["cvae fit data.npy --logdir runs/mnist",
         "cvae fit mnist.npz --key X_train --logdir runs/mnist10 --n-components 10 --max-steps 5000",
         "cvae fit table.csv --label-column label --logdir runs/table --param dropout=0.1",
         "cvae fit cells.h5ad --layer counts --likelihood negative_binomial --logdir runs/cells",
         "cvae fit data.npy --logdir runs/mnist --resume   # finish a run stopped by Ctrl-C",
         "cvae fit data.npy --logdir runs/mnist --resume --max-steps 60000   # train a finished run further"],
    )
    _add_input(fit)
    fit.add_argument("--logdir", required=True, help="directory for the model (must be new unless --resume)")
    fit.add_argument("--labels", metavar="FILE|COLUMN", help="class labels that shape the embedding (-1 for "
                     "unlabelled rows): a .npy, .npz or text file of one per row, for an .h5ad INPUT a column "
                     "of its obs, for a .csv INPUT one of its columns (left out of the features); their weight is "
                     "--param target_weight=W (default 0.5). A --label-column is left out of the features, not used "
                     "as labels")
    fit.add_argument("--labels-key", metavar="KEY", help="array of the labels in a --labels .npz archive (needed "
                     "when it is INPUT's archive too)")
    _add_covariates(fit, "what each row was measured under (its batch...), which the model is conditioned on: "
                         "a file of one value per row, or for an .h5ad INPUT obs columns separated by commas")
    fit.add_argument("--valid", metavar="FILE", help="validation data (default: hold out --validation-fraction)")
    fit.add_argument("--n-components", type=int, help="embedding dimension (default: 2)")
    fit.add_argument("--hidden-layer-sizes", type=_sizes, default=None, metavar="N,N,...",
                     help="encoder widths, e.g. 512,256 (default: chosen from the data)")
    fit.add_argument("--iaf-flow-length", type=int, help="IAF steps on the posterior (default: 0)")
    fit.add_argument("--likelihood", help="auto, gaussian, bernoulli, or for counts poisson, negative_binomial or zinb "
                     "(default: auto)")
    fit.add_argument("--layer", help="for an .h5ad INPUT, the layer to read instead of X (e.g. counts)")
    fit.add_argument("--normalize", help="global, feature or none (default: global)")
    fit.add_argument("--beta", type=float, help="weight of the KL term (default: 1)")
    fit.add_argument("--batch-size", type=int, help="training batch size (default: 512)")
    fit.add_argument("--max-steps", type=int, help="step budget (default: auto, passes over the "
                     "rows that follow their number: cvae.training.run.step_budget)")
    fit.add_argument("--learning-rate-init", type=float, help="initial (peak) learning rate (default: 3e-3)")
    fit.add_argument("--validation-fraction", type=float, help="held-out fraction (default: 0.1)")
    fit.add_argument("--tensorboard", action="store_true", help="write TensorBoard event files into the logdir")
    fit.add_argument("--resume", action="store_true", help="continue the run saved in --logdir with its saved "
                     "parameters except those given: an interrupted run, or a finished one with a larger --max-steps")
    fit.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    fit.add_argument("--precision", choices=("float32", "bfloat16", "float16", "auto"),
                     help="arithmetic of the training steps; 16 bits = mixed precision; auto: bfloat16 for large "
                          "models where the hardware multiplies it natively, else float32 (default: auto)")
    fit.add_argument("--seed", type=int, default=None, help="random_state, for a reproducible fit")
    fit.add_argument("--param", type=_key_value, action="append", default=[], metavar="NAME=VALUE",
                     help="any other CompressionVAE parameter, e.g. --param dropout=0.1 (repeatable)")
    fit.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    fit.set_defaults(run=_fit)


def _add_transform_command(commands):
    transform = _add_command(
        commands, "transform", "embed data with a fitted model",
        "Embed INPUT with the model in LOGDIR as CompressionVAE.transform does (placed by its nearest training "
        "rows where the model keeps them, else the encoder's posterior mean) and write the embedding.",
        ["cvae transform runs/mnist test.npy -o embedding.npy", "cvae transform runs/table new.csv -o z.csv"],
    )
    _add_logdir(transform)
    _add_input(transform)
    transform.add_argument("-o", "--output", required=True, help="where to write the embedding (.npy or .csv)")
    _add_covariates(transform, "for a model fitted with covariates, those of INPUT's rows, as fit took them")
    transform.set_defaults(run=_transform)


def _add_predict_command(commands):
    predict = _add_command(
        commands, "predict", "transfer labels to data with a model fitted with labels",
        "Predict the class of each row of INPUT with the model in LOGDIR, fitted with labels, as "
        "CompressionVAE.predict does (a vote of the nearest labelled training rows in the embedding, or the "
        "classifier trained with the model), and write one label per row, or with --proba the probability of "
        "each class (one column per class, in the order of the model's classes).",
        ["cvae predict runs/table new.csv -o labels.csv",
         "cvae predict runs/cells query.h5ad --covariates batch -o proba.npy --proba"],
    )
    _add_logdir(predict)
    _add_input(predict)
    predict.add_argument("-o", "--output", required=True, help="where to write the labels (.npy or .csv)")
    predict.add_argument("--proba", action="store_true", help="write each class's probability instead")
    predict.add_argument("--label-transfer", choices=["auto", "vote", "classifier"], default=None,
                         help="how to predict (default: as saved, 'auto': the classifier where the model has one)")
    _add_covariates(predict, "for a model fitted with covariates, those of INPUT's rows, as fit took them")
    predict.set_defaults(run=_predict)


def _add_inverse_command(commands):
    inverse = _add_command(
        commands, "inverse-transform", "decode latent codes back to data space",
        "Decode the latent codes in INPUT (n_components columns) with the model in LOGDIR.",
        ["cvae inverse-transform runs/mnist embedding.npy -o reconstruction.npy"],
    )
    _add_logdir(inverse)
    _add_input(inverse, labels=False)
    inverse.add_argument("-o", "--output", required=True, help="where to write the decoded data (.npy or .csv)")
    _add_covariates(inverse, "for a model fitted with covariates, those to decode under: a file of one value per "
                             "code, or of one for all")
    inverse.set_defaults(run=_inverse_transform)


def _add_sample_command(commands):
    sample = _add_command(
        commands, "sample", "generate new data from the prior",
        "Draw latent codes from the prior N(0, I) and decode them with the model in LOGDIR.",
        ["cvae sample runs/mnist -n 16 -o generated.npy --seed 0"],
    )
    _add_logdir(sample)
    sample.add_argument("-n", "--n-samples", type=int, default=10, help="how many (default: 10)")
    sample.add_argument("-o", "--output", required=True, help="where to write them (.npy or .csv)")
    sample.add_argument("--seed", type=int, default=None, help="random_state of the draws")
    _add_covariates(sample, "for a model fitted with covariates, those to generate under: a file of one value per "
                            "sample, or of one for all")
    sample.set_defaults(run=_sample)


def _add_export_command(commands):
    export = _add_command(
        commands, "export", "write the transform, encoder or decoder as ONNX or a torch.export program",
        "Write what `cvae transform` computes (raw rows in, embedding out, the normalization and any neighbour "
        "placement inside), the encoder or the decoder of the model in LOGDIR to OUTPUT: .onnx for onnxruntime "
        "and other ONNX runtimes, .pt2 for torch.export.load. The file runs without cvae.",
        ["cvae export runs/mnist transform.onnx", "cvae export runs/mnist encoder.onnx --part encoder",
         "cvae export runs/mnist decoder.pt2 --part decoder"],
    )
    _add_logdir(export)
    export.add_argument("output", metavar="OUTPUT", help="the file to write: .onnx or .pt2")
    # cvae.export.PARTS, without importing torch for the command line's help (tested equal)
    export.add_argument("--part", choices=("transform", "encoder", "decoder"), default="transform",
                        help="transform: what `cvae transform` gives, the neighbour placement with its training rows "
                             "where the model has one; encoder: the encoder's map; decoder (default: transform)")
    export.set_defaults(run=_export)


def _add_plot_command(commands):
    plot = _add_command(
        commands, "plot", "draw an embedding, a decoded latent grid or the training history",
        "Save a figure (PNG, PDF, SVG... by extension): the 2-D embedding of INPUT coloured by labels, "
        "the images decoded over a grid of the latent plane, or the losses and learning rate.",
        ["cvae plot runs/mnist test.npy --labels test_labels.npy -o embedding.png",
         "cvae plot runs/table data.csv --label-column label -o embedding.png",
         "cvae plot runs/mnist --kind latent-grid --image-shape 28x28 -o grid.png",
         "cvae plot runs/mnist --kind history -o history.png"],
    )
    _add_logdir(plot)
    plot.add_argument("input", metavar="INPUT", nargs="?", help="data to embed (for --kind embedding; for "
                      "--kind latent-grid, data whose embedding sets the grid's range)")
    plot.add_argument("--key", help="array to read from a .npz archive")
    plot.add_argument("--label-column", help="column of INPUT holding labels (left out of the features)")
    plot.add_argument("--labels", metavar="FILE", help="labels: .npy, .npz, or text with one per line")
    plot.add_argument("--labels-key", metavar="KEY", help="array of a --labels .npz archive to read (e.g. y_test)")
    plot.add_argument("--kind", choices=("embedding", "latent-grid", "history"), default="embedding")
    plot.add_argument("--image-shape", type=_sizes, metavar="HxW", help="image shape for --kind latent-grid "
                      "(default: square)")
    plot.add_argument("--grid-size", type=int, default=20, help="images per side of the latent grid (default: 20)")
    plot.add_argument("-o", "--output", required=True, help="image file to write")
    plot.set_defaults(run=_plot)


def _add_info_command(commands):
    info = _add_command(
        commands, "info", "describe a fitted model: parameters, training history, device",
        "Print the model's architecture, how training went, the device and the files in LOGDIR.",
        ["cvae info runs/mnist", "cvae info runs/mnist --json"],
    )
    _add_logdir(info)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=_info)


def _add_demo_command(commands):
    demo = _add_command(
        commands, "demo", "embed scikit-learn's digits and compare with PCA",
        "Fit a 2-D CompressionVAE on scikit-learn's bundled digits, print the validation loss and the 10-NN "
        "accuracy of the test embedding next to PCA's, and save an embedding plot when matplotlib is installed.",
        ["cvae demo", "cvae demo --max-steps 2000 --plot digits.png"],
    )
    demo.add_argument("--max-steps", type=int, default=None, help="training step budget (default: the estimator's)")
    demo.add_argument("--plot", default="digits_embedding.png", help="where to save the plot")
    demo.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    demo.add_argument("--seed", type=int, default=0, help="random_state (default: 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cvae",
        description="CompressionVAE: dimensionality reduction with a variational autoencoder. Fit a model "
        "into a log directory, then embed, decode, generate and plot with it.",
        epilog="Run 'cvae COMMAND --help' for a command's options and examples.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    _add_fit_command(commands)
    _add_transform_command(commands)
    _add_predict_command(commands)
    _add_inverse_command(commands)
    _add_sample_command(commands)
    _add_export_command(commands)
    _add_plot_command(commands)
    _add_info_command(commands)
    _add_demo_command(commands)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    if hasattr(args, "param"):
        args.param = dict(args.param)
    if not getattr(args, "quiet", True):
        # Progress as log lines when standard error is not a terminal (see the trainer).
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    with warnings.catch_warnings():
        warnings.simplefilter("default")

        def show(message, *_, **__):  # at once: a warning about the data comes before the fit it concerns
            print(f"cvae {args.command}: warning: {message}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        try:
            return args.run(args)
        except BrokenPipeError:  # e.g. `cvae info --json | head`
            sys.stdout = open(os.devnull, "w")
            return 0
        except Exception as exc:
            if not isinstance(exc, _user_errors()):
                raise
            print(f"cvae {args.command}: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
