"""Reading and writing data files for the command line and the original interface."""

import os
import stat

import numpy as np
import pytest

from cvae.files import read_array, transform_to_npy, write_array


@pytest.fixture
def X():
    return np.arange(12, dtype=np.float64).reshape(4, 3)


def test_npy_npz_and_csv_round_trips(tmp_path, X):
    for name in ("a.npy", "a.csv"):
        write_array(tmp_path / name, X)
        np.testing.assert_array_equal(read_array(tmp_path / name)[0], X)
    np.savez(tmp_path / "one.npz", data=X)
    np.savez(tmp_path / "named.npz", X=X, y=np.zeros(4))
    np.testing.assert_array_equal(read_array(tmp_path / "one.npz")[0], X)
    np.testing.assert_array_equal(read_array(tmp_path / "named.npz")[0], X)
    with pytest.raises(ValueError, match=r"shape \(4,\); expected rows of samples \(2-D\)"):
        read_array(tmp_path / "named.npz", key="y")  # a vector is not a table of samples


def test_labels_are_written_as_text_whatever_their_dtype(tmp_path):
    labels = np.array(["cat", "dog", 3], dtype=object)  # as pandas or mixed classes give them
    write_array(tmp_path / "labels.npy", labels)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy", allow_pickle=False), ["cat", "dog", "3"])
    write_array(tmp_path / "labels.csv", labels, ["label"])
    assert (tmp_path / "labels.csv").read_text().splitlines() == ["label", "cat", "dog", "3"]


def test_written_files_get_the_usual_permissions(tmp_path, X):
    path = tmp_path / "out" / "z.npy"
    write_array(path, X)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in path.parent.iterdir()] == ["z.npy"]  # no temporary file left


def test_transform_to_npy_checks_chunk_size(run, X, tmp_path):
    vae, _ = run
    for bad in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            transform_to_npy(vae, X, tmp_path / "z.npy", chunk_size=bad)


def test_no_rows_to_write_leave_the_output_file_as_it_was(run, tmp_path):
    vae, _ = run
    np.save(tmp_path / "empty.npy", np.zeros((0, 64), dtype=np.float32))
    out = tmp_path / "out.npy"
    np.save(out, np.ones(3))
    before = out.read_bytes()
    with pytest.raises(ValueError, match="holds no rows: there is nothing to write to"):
        transform_to_npy(vae, tmp_path / "empty.npy", out)
    assert out.read_bytes() == before


def test_upper_case_npy_suffixes_are_read_and_written(run, X, tmp_path):
    vae, _ = run
    np.save(tmp_path / "A.npy", X[:10])
    (tmp_path / "A.npy").rename(tmp_path / "A.NPY")
    transform_to_npy(vae, tmp_path / "A.NPY", tmp_path / "Z.NPY")
    np.testing.assert_array_equal(np.load(tmp_path / "Z.NPY"), vae.transform(X[:10]))
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(ValueError, match=r"dir.npy': it is a directory"):
        transform_to_npy(vae, tmp_path / "A.NPY", tmp_path / "dir.npy")
