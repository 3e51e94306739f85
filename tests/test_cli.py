"""The command line, the demo and the examples, run end to end in a fast mode."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from cvae import CompressionVAE
from cvae.cli import build_parser, main
import os
from cvae.files import read_array

FAST = ["--max-steps", "40", "--hidden-layer-sizes", "32,16", "--seed", "0", "--quiet"]
COMMANDS = ["fit", "transform", "predict", "inverse-transform", "sample", "plot", "info", "demo"]


@pytest.fixture
def files(tmp_path, digits):
    X, y = digits
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    np.savetxt(tmp_path / "table.csv", np.column_stack([X[:200], y[:200]]), delimiter=",", header=header,
               comments="", fmt="%g")
    np.savez(tmp_path / "split.npz", X_train=X[:1500], X_test=X[1500:])
    return tmp_path


@pytest.fixture
def fitted(files):
    assert main(["fit", str(files / "X.npy"), "--logdir", str(files / "run"), *FAST]) == 0
    return files / "run"


def test_help_of_every_command_prints_cleanly(capsys):
    result = subprocess.run([sys.executable, "-m", "cvae", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    for command in COMMANDS:
        assert command in result.stdout
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: cvae {command}") and "examples:" in out


def test_fit_writes_a_logdir_that_the_estimator_loads(files, capsys):
    fitted = files / "run"
    assert main(["fit", str(files / "X.npy"), "--logdir", str(fitted), *FAST]) == 0
    out = capsys.readouterr().out
    assert "fitted 1797 samples x 64 features -> 2 components: 40 steps" in out
    vae = CompressionVAE.load(fitted)
    assert vae.n_steps_ == 40 and vae.hidden_layer_sizes_ == [32, 16] and vae.random_state == 0


@pytest.mark.parametrize(
    "source, options, n_rows",
    [
        ("table.csv", ["--label-column", "label"], 200),
        ("table.csv", ["--label-column", "64"], 200),
        ("split.npz", ["--key", "X_train"], 1500),
    ],
)
def test_fit_reads_csv_and_npz(files, source, options, n_rows, capsys):
    logdir = files / "run"
    assert main(["fit", str(files / source), "--logdir", str(logdir), *options, *FAST]) == 0
    assert f"fitted {n_rows} samples x 64 features" in capsys.readouterr().out


def test_fit_reads_a_directory_of_npy_files(files, digits):
    root = files / "dataset"
    for i, row in enumerate(digits[0][:60]):
        (root / str(i % 3)).mkdir(parents=True, exist_ok=True)
        np.save(root / str(i % 3) / f"{i}.npy", row)
    assert main(["fit", str(root), "--logdir", str(files / "run"), *FAST]) == 0
    assert CompressionVAE.load(files / "run").n_features_in_ == 64


def test_fit_passes_other_parameters_and_resumes(files):
    logdir = str(files / "run")
    argv = ["fit", str(files / "X.npy"), "--logdir", logdir, *FAST, "--precision", "bfloat16", "--param",
            "dropout=0.1", "--param", "learning_rate=\"constant\""]
    assert main(argv) == 0
    vae = CompressionVAE.load(logdir)
    assert vae.dropout == 0.1 and vae.learning_rate == "constant" and vae.precision == "bfloat16"
    assert main(["fit", str(files / "X.npy"), "--logdir", logdir, *FAST, "--max-steps", "70", "--resume"]) == 0
    assert CompressionVAE.load(logdir).n_steps_ == 70


def test_transform_inverse_transform_and_sample_write_arrays(fitted, files, digits):
    vae = CompressionVAE.load(fitted)
    X = digits[0]
    assert main(["transform", str(fitted), str(files / "X.npy"), "-o", str(files / "z.npy")]) == 0
    Z = np.load(files / "z.npy")
    np.testing.assert_array_equal(Z, vae.transform(X))
    assert main(["inverse-transform", str(fitted), str(files / "z.npy"), "-o", str(files / "x.csv")]) == 0
    np.testing.assert_allclose(np.loadtxt(files / "x.csv", delimiter=",", skiprows=1), vae.inverse_transform(Z),
                               rtol=1e-6,
                               atol=1e-6)
    assert main(["transform", str(fitted), str(files / "table.csv"), "--label-column", "label", "-o",
                 str(files / "z.csv")]) == 0
    np.testing.assert_allclose(np.loadtxt(files / "z.csv", delimiter=",", skiprows=1), vae.transform(X[:200]),
                               atol=1e-6)
    assert (files / "z.csv").read_text().splitlines()[0] == "compressionvae0,compressionvae1"
    assert (files / "x.csv").read_text().splitlines()[0].startswith("x0,x1,")
    assert main(["sample", str(fitted), "-n", "7", "--seed", "3", "-o", str(files / "s.npy")]) == 0
    np.testing.assert_array_equal(np.load(files / "s.npy"), vae.sample(7, random_state=3))


def test_predict_writes_labels_or_probabilities_of_a_model_fitted_with_labels(files, digits, fitted, capsys):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    np.save(files / "names.npy", names)
    run = str(files / "labelled")
    assert main(["fit", str(files / "X.npy"), "--labels", str(files / "names.npy"), "--logdir", run, *FAST,
                 "--param", "classifier_weight=1.0"]) == 0
    vae = CompressionVAE.load(run)
    assert main(["predict", run, str(files / "X.npy"), "-o", str(files / "labels.csv")]) == 0
    lines = (files / "labels.csv").read_text().splitlines()
    assert lines[0] == "label" and lines[1:] == vae.predict(X).tolist()  # the classifier's, as saved
    assert main(["predict", run, str(files / "X.npy"), "-o", str(files / "labels.npy"), "--label-transfer",
                 "vote"]) == 0
    np.testing.assert_array_equal(np.load(files / "labels.npy"), vae.set_params(label_transfer="vote").predict(X))
    assert main(["predict", run, str(files / "X.npy"), "--proba", "-o", str(files / "proba.csv")]) == 0
    assert (files / "proba.csv").read_text().splitlines()[0] == ",".join(vae.classes_)
    np.testing.assert_allclose(np.loadtxt(files / "proba.csv", delimiter=",", skiprows=1),
                               vae.set_params(label_transfer="auto").predict_proba(X), atol=1e-6)
    assert "wrote the 1797 x 10 class probabilities" in capsys.readouterr().out
    assert main(["predict", str(fitted), str(files / "X.npy"), "-o", str(files / "none.npy")]) == 2  # no labels
    assert "predict needs labels: fit with y" in capsys.readouterr().err


def test_plot_kinds_write_pngs(fitted, files, png_size):
    pytest.importorskip("matplotlib")
    runs = {
        "embedding.png": [str(files / "X.npy"), "--labels", str(files / "y.npy")],
        "table.png": [str(files / "table.csv"), "--label-column", "label"],
        "grid.png": ["--kind", "latent-grid", "--grid-size", "5"],
        "history.png": ["--kind", "history"],
    }
    for name, options in runs.items():
        assert main(["plot", str(fitted), *options, "-o", str(files / name)]) == 0
    assert png_size(files / "embedding.png") == (700, 600)
    assert png_size(files / "grid.png") == (800, 800)
    assert png_size(files / "history.png") == (800, 600)


def test_info_describes_model_training_and_files(fitted, capsys):
    capsys.readouterr()
    assert main(["info", str(fitted)]) == 0
    text = capsys.readouterr().out
    assert "n_components: 2" in text and "steps: 40" in text and "loaded_on: cpu" in text
    assert "checkpoint.pt:" in text
    assert main(["info", str(fitted), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"]["hidden_layer_sizes"] == [32, 16]
    assert info["training"]["stop_reason"] == "max_steps" and info["training"]["validations"] == 1
    assert info["training"]["precision"] == "float32" and info["training"]["cpu_threads"] >= 1
    assert info["training"]["max_steps"] == info["training"]["steps"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "missing.npy", "--logdir", "run"], "No such file or directory: 'missing.npy'"),
        (["fit", "split.npz", "--logdir", "run"], "holds several arrays (X_train, X_test); choose one with a key"),
        (["fit", "X.npy", "--logdir", "run", "--param", "n_components=0"], "n_components"),
        (["fit", "table.csv", "--label-column", "colour", "--logdir", "run"], "no column named 'colour'"),
        (["transform", "nowhere", "X.npy", "-o", "z.npy"], "No parameter file in log directory"),
        (["plot", "run", "-o", "x.png"], "needs the data to embed"),
    ],
)
def test_user_errors_are_one_line_without_traceback(files, argv, message, capsys, monkeypatch):
    monkeypatch.chdir(files)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cvae {argv[0]}: error:") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_fit_into_a_used_logdir_suggests_resume(fitted, files, capsys):
    assert main(["fit", str(files / "X.npy"), "--logdir", str(fitted), *FAST]) == 2
    assert "add --resume" in capsys.readouterr().err


def test_warnings_are_one_line_each(files, capsys):
    main(["fit", str(files / "X.npy"), "--logdir", str(files / "run"), "--max-steps", "5", "--quiet",
          "--param", "learning_rate=adaptive"])
    err = capsys.readouterr().err
    assert err.startswith("cvae fit: warning: Reached max_steps=5") and err.count("\n") == 1


def test_fit_logs_progress_lines_when_not_a_terminal(files, caplog):
    with caplog.at_level("INFO", logger="cvae.training.trainer"):
        main(["fit", str(files / "X.npy"), "--logdir", str(files / "run"), "--max-steps", "40",
              "--param", "validation_interval=20"])
    lines = [r.getMessage() for r in caplog.records if r.name == "cvae.training.trainer"]
    assert re.match(r"Training to step 40 from step 0 on cpu: \d+ CPU thread\(s\), float32 precision, batch", lines[0])
    assert [line.split()[1] for line in lines[1:]] == ["20/40", "40/40"]
    assert "valid=" in lines[1] and "lr=0.001" in lines[1]


def test_fit_help_states_each_default_as_the_estimator_has_it():
    import re

    from cvae import CompressionVAE
    from cvae.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    defaults = CompressionVAE().get_params()
    checked = 0
    for action in commands.choices["fit"]._actions:
        stated = re.search(r"\(default: ([^),:;]+)", action.help or "")
        if action.dest not in defaults or stated is None:
            continue
        expected, said = defaults[action.dest], stated.group(1).strip()
        if isinstance(expected, float):
            assert float(said) == expected, action.dest
        elif expected is None:
            assert said.startswith("chosen"), action.dest
        else:
            assert said == str(expected), action.dest
        checked += 1
    assert checked >= 12


def test_a_fit_stopped_by_ctrl_c_exits_130_and_keeps_the_model(tmp_path, monkeypatch, capsys):
    from cvae import CompressionVAE
    from cvae.cli import EXIT_INTERRUPTED, main
    from cvae.training import Trainer

    original = Trainer._train_step

    def train_step(self, batch):  # the way Ctrl-C stops the loop, at step 20
        if self.step == 19:
            self.request_stop()
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_train_step", train_step)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((100, 6), dtype=np.float32))
    code = main(["fit", str(tmp_path / "x.npy"), "--logdir", str(tmp_path / "run"), "--max-steps", "200", "--quiet"])
    assert code == EXIT_INTERRUPTED == 130 and "interrupted" in capsys.readouterr().err
    assert CompressionVAE.load(tmp_path / "run").n_steps_ == 20


def test_labels_from_the_inputs_archive_need_their_key(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.random((120, 5), dtype=np.float32)
    y = (X[:, 0] > 0.5).astype(np.int64)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    common = ["fit", str(tmp_path / "data.npz"), "--key", "X", "--labels", str(tmp_path / "data.npz"),
              "--max-steps", "20", "--quiet"]
    assert main([*common, "--logdir", str(tmp_path / "a")]) == 2  # X would have been read as the labels
    assert "--labels-key" in capsys.readouterr().err
    assert main([*common, "--labels-key", "y", "--logdir", str(tmp_path / "b")]) == 0
    assert CompressionVAE.load(tmp_path / "b").classes_.tolist() == [0, 1]


def test_a_csv_column_serves_as_labels_and_text_columns_name_the_option(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.random((120, 4))
    species = np.where(X[:, 0] > 0.5, "setosa", "virginica")
    lines = ["a,b,c,d,species"] + [",".join([*map(str, row), s]) for row, s in zip(X, species)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    assert main(["fit", str(tmp_path / "t.csv"), "--logdir", str(tmp_path / "r"), "--max-steps", "20", "--quiet"]) == 2
    assert "--label-column" in capsys.readouterr().err  # the text column, and the option that names it
    assert main(["fit", str(tmp_path / "t.csv"), "--labels", "species", "--logdir", str(tmp_path / "s"),
                 "--max-steps", "20", "--quiet"]) == 0
    vae = CompressionVAE.load(tmp_path / "s")
    assert vae.classes_.tolist() == ["setosa", "virginica"] and vae.n_features_in_ == 4


CLI_FAST = ["--max-steps", "40", "--hidden-layer-sizes", "32,16", "--seed", "0", "--quiet"]


def cli(capsys, *argv):
    """Exit status and standard error of the command line."""
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def test_cli_resume_keeps_the_saved_architecture(npy, tmp_path, capsys):
    logdir = tmp_path / "r"
    assert main(["fit", str(npy), "--logdir", str(logdir), "--n-components", "5", *CLI_FAST]) == 0
    assert main(["fit", str(npy), "--logdir", str(logdir), "--resume", "--max-steps", "80", "--quiet"]) == 0
    assert main(["transform", str(logdir), str(npy), "-o", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (400, 5)
    loaded = CompressionVAE.load(logdir)
    assert loaded.n_components == loaded.spec_.model.n_latent == 5 and loaded.n_steps_ == 80
    capsys.readouterr()
    assert main(["info", str(logdir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["n_components"] == 5
    status, err = cli(capsys, "fit", npy, "--logdir", logdir, "--resume", "--n-components", "2", "--quiet")
    assert status == 2 and "whose n_components is 5, but n_components=2 was given" in err


def test_csv_label_column_may_hold_text(tmp_path, capsys):
    rows = ["1,2,zero", "3,4,one", "5,6,zero"]
    (tmp_path / "t.csv").write_text("\n".join(["a,b,label"] + rows * 40) + "\n")
    data, labels = read_array(tmp_path / "t.csv", label_column="label")
    assert data.shape == (120, 2) and list(labels[:3]) == ["zero", "one", "zero"]
    assert main(["fit", str(tmp_path / "t.csv"), "--label-column", "label", "--logdir", str(tmp_path / "r"),
                 *CLI_FAST]) == 0


def test_cli_os_and_device_errors_are_one_line(run, npy, tmp_path, capsys):
    _, logdir = run
    status, err = cli(capsys, "fit", npy, "--logdir", tmp_path / "m", "--device", "mps", "--quiet")
    assert status == 2 and "Apple MPS is not available" in err and "Traceback" not in err
    status, err = cli(capsys, "transform", logdir, npy, "-o", npy / "z.npy")  # under a file
    assert status == 2 and err.startswith("cvae transform: error:")
    loop = tmp_path / "loop"
    loop.mkdir()
    os.symlink(loop, loop / "again")
    status, err = cli(capsys, "fit", loop, "--logdir", tmp_path / "l", "--quiet")
    assert status == 2 and err.startswith("cvae fit: error:")
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    np.save(dangling / "a.npy", np.zeros((3, 4), np.float32))
    os.symlink(tmp_path / "gone.npy", dangling / "b.npy")
    status, err = cli(capsys, "fit", dangling, "--logdir", tmp_path / "d", "--quiet")
    assert status == 2 and "b.npy" in err and "dangling link" in err


def test_logdir_naming_a_file_says_so(npy, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for extra in ([], ["--resume"]):
        status, err = cli(capsys, "fit", npy, "--logdir", tmp_path / "f", *extra, *CLI_FAST)
        assert status == 2 and "is a file, not a directory" in err


def test_fit_reports_where_it_saved(npy, tmp_path, capsys):
    assert main(["fit", str(npy), "--logdir", str(tmp_path / "B"), *CLI_FAST]) == 0
    assert f"saved in {tmp_path / 'B'}" in capsys.readouterr().out
    assert (tmp_path / "B" / "checkpoint.pt").is_file()


def test_plot_reads_labels_from_an_npz_key(run, npy, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, logdir = run
    np.savez(tmp_path / "labels.npz", y_train=np.arange(400) % 10, X_train=np.zeros((400, 2)))
    status, err = cli(capsys, "plot", logdir, npy, "--labels", tmp_path / "labels.npz", "-o", tmp_path / "e.png")
    assert status == 2 and "choose one with a key" in err
    assert main(["plot", str(logdir), str(npy), "--labels", str(tmp_path / "labels.npz"), "--labels-key", "y_train",
                 "-o", str(tmp_path / "e.png")]) == 0


def test_a_vector_given_as_data_is_an_error(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.arange(10.0))
    status, err = cli(capsys, "fit", tmp_path / "v.npy", "--logdir", tmp_path / "r", "--quiet")
    assert status == 2 and "shape (10,); expected rows of samples (2-D" in err


def test_help_does_not_load_torch():
    script = ("import sys\nfrom cvae.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_cli_options_given_twice_are_refused_and_resume_takes_verbose(run, npy, capsys):
    run = run[1]  # trained in memory with the neighbour term: the CLI reads a small .npy into memory to continue it
    resume = ["fit", str(npy), "--logdir", str(run), "--resume", "--max-steps", "70", "--param", "verbose=false"]
    assert main(resume) == 0
    assert CompressionVAE.load(run).n_steps_ == 70
    assert main(["fit", str(npy), "--logdir", str(run) + "F", *CLI_FAST]) == 0
    assert main(["fit", str(npy), "--logdir", str(run) + "F", "--resume", "--max-steps", "70",
                 "--param", "verbose=false"]) == 0
    capsys.readouterr()
    assert main(["fit", str(npy), "--logdir", str(run) + "A", "--param", "logdir=B"]) == 2
    assert "logdir is given both by its own option and by --param" in capsys.readouterr().err
    assert main(["fit", str(npy), "--logdir", str(run) + "A", "--max-steps", "30", "--param", "max_steps=50"]) == 2
    assert "max_steps is given both by its own option and by --param" in capsys.readouterr().err


def test_cli_bugs_show_their_traceback(npy, tmp_path, monkeypatch):
    import cvae.estimator

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(cvae.estimator.CompressionVAE, "fit", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["fit", str(npy), "--logdir", str(tmp_path / "r")])


def test_covariates_flow_through_fit_transform_inverse_transform_and_sample(tmp_path, capsys):
    from cvae.datasets import make_batched_counts

    X, _, batch, _ = make_batched_counts(300, 40, n_batches=2, random_state=0)
    np.save(tmp_path / "X.npy", X.toarray())
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "one.npy", np.array([1]))
    run = str(tmp_path / "run")
    assert main(["fit", str(tmp_path / "X.npy"), "--logdir", run, "--covariates", str(tmp_path / "batch.npy"),
                 "--likelihood", "poisson", *FAST]) == 0
    vae = CompressionVAE.load(run)
    assert vae.spec_.covariates.columns[0].categories == ("0", "1")
    for output in ("z.npy", "z.csv"):  # a .npy output is written a chunk at a time, a .csv at once
        assert main(["transform", run, str(tmp_path / "X.npy"), "-o", str(tmp_path / output),
                     "--covariates", str(tmp_path / "batch.npy")]) == 0
        np.testing.assert_allclose(read_array(str(tmp_path / output))[0], vae.transform(X.toarray(), covariates=batch),
                                   rtol=1e-5, atol=1e-6)
    assert main(["inverse-transform", run, str(tmp_path / "z.npy"), "-o", str(tmp_path / "x.npy"),
                 "--covariates", str(tmp_path / "one.npy")]) == 0
    assert np.load(tmp_path / "x.npy").shape == (300, 40)
    assert main(["sample", run, "-n", "5", "-o", str(tmp_path / "s.npy"), "--covariates",
                 str(tmp_path / "one.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 40)
    capsys.readouterr()
    assert main(["transform", run, str(tmp_path / "X.npy"), "-o", str(tmp_path / "w.npy")]) == 2
    assert "conditioned on the covariates ['covariate']" in capsys.readouterr().err
