"""Row sources on disk: .npy files, directories of them, memmaps, and the errors of broken ones."""

import numpy as np
import pytest
import scipy.sparse as sp

from cvae import CompressionVAE
from cvae.data.inputs import array_source, open_source
from cvae.data.sources import ArraySource, NpyDirectorySource, RawFileSource, RowSource
from cvae.files import read_array


def _save_shards(root, X, sizes):
    """Save ``X`` as .npy files of ``sizes`` rows (0 means one vector) in nested folders."""
    start = 0
    for i, size in enumerate(sizes):
        folder = root / f"part{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:03d}.npy", X[start] if size == 0 else X[start : start + size])
        start += max(size, 1)
    assert start == len(X)
    return sorted(root.rglob("*.npy"))


def test_npy_file_source_reads_any_range(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    source = open_source(tmp_path / "x.npy")
    assert isinstance(source, RawFileSource)
    assert (source.n_samples, source.n_features, source.dtype) == (103, 5, np.float32)
    for start, stop in [(0, 103), (7, 8), (50, 99), (103, 103)]:
        np.testing.assert_array_equal(source.read(start, stop), rows[start:stop])


def test_directory_source_reads_across_file_boundaries(rows, tmp_path):
    files = _save_shards(tmp_path, rows, [10, 0, 0, 40, 1, 50])
    expected = np.concatenate([np.atleast_2d(np.load(f)) for f in files])  # sorted path order
    source = open_source(tmp_path)
    assert isinstance(source, NpyDirectorySource)
    assert source.n_samples == 103
    for start, stop in [(0, 103), (9, 13), (11, 60), (60, 103), (102, 103)]:
        np.testing.assert_array_equal(source.read(start, stop), expected[start:stop])


def test_directory_of_mixed_dtypes_reads_a_common_dtype(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.uint8).reshape(2, 3))
    np.save(tmp_path / "b.npy", np.full((1, 3), 0.5, dtype=np.float32))
    source = open_source(tmp_path)
    np.testing.assert_array_equal(source.read(0, 3), [[0, 1, 2], [3, 4, 5], [0.5, 0.5, 0.5]])
    assert source.dtype == np.float32


def test_memmap_owning_its_map_is_read_from_its_file_and_views_through_the_map(rows, tmp_path):
    path = tmp_path / "raw.dat"
    header = b"0123456789"  # data that starts at an offset that is not page aligned
    path.write_bytes(header + rows.tobytes())
    mm = np.memmap(path, dtype=np.float32, mode="r", offset=len(header), shape=rows.shape)
    source = open_source(mm)
    assert isinstance(source, RawFileSource)
    np.testing.assert_array_equal(source.read(3, 30), rows[3:30])
    view = open_source(mm[10:])
    assert isinstance(view, ArraySource) and not view.in_memory
    np.testing.assert_array_equal(view.read(0, 5), rows[10:15])
    assert open_source(rows) is None  # plain arrays are validated as arrays


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda p: (p / "d").mkdir(), ValueError, "No .npy files found"),
        (lambda p: np.save(p / "s.npy", np.array([["a", "b"]])), ValueError, "holds strings"),
        (lambda p: np.save(p / "o.npy", np.array([[{}]], dtype=object), allow_pickle=True), ValueError,
         "holds Python objects"),
        (lambda p: np.save(p / "c.npy", np.zeros((2, 2, 2))), ValueError, r"shape \(2, 2, 2\)"),
        (lambda p: (p / "x.csv").write_text("1,2\n"), ValueError, "read_array"),
        (lambda p: (p / "bad.npy").write_bytes(b"not an npy file"), ValueError, "not a valid .npy file"),
    ],
    ids=["empty directory", "strings", "objects", "3-D", "csv", "garbage"],
)
def test_bad_files_are_refused_with_a_clear_error(tmp_path, make, error, match):
    make(tmp_path)
    target = next(iter(sorted(tmp_path.iterdir())))
    with pytest.raises(error, match=match):
        open_source(target)


def test_directory_with_different_widths_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"different numbers of features: \[3, 4\]"):
        open_source(tmp_path)


def test_truncated_file_is_reported(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="shorter than its header says"):
        open_source(tmp_path / "x.npy").read(0, 103)


def test_every_kind_of_input_becomes_a_row_source(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "a.npy", rows)
    memmap = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.float32, shape=rows.shape)
    memmap[:] = rows
    for X in (rows, sp.csr_matrix(rows), tmp_path / "x.npy", tmp_path / "dir", memmap):
        source = open_source(X) or array_source(X)  # arrays in memory are validated, then wrapped
        assert isinstance(source, RowSource), type(source)
        assert (source.n_samples, source.n_features) == rows.shape
        np.testing.assert_array_equal(np.asarray(source.read(100, 103)), rows[100:103])


@pytest.mark.parametrize("mode", ["c", "r+"])
def test_modified_memmaps_are_read_from_memory(run, npy, mode):
    vae, _ = run
    m = np.load(npy, mmap_mode=mode)
    m[:10] += 3.0
    np.testing.assert_array_equal(vae.transform(m), vae.transform(np.array(m)))
    np.testing.assert_array_equal(vae.score_samples(m), vae.score_samples(np.array(m)))


def test_a_folder_named_like_a_npy_file_is_not_read(tmp_path, fast):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((50, 4)).astype(np.float32))
    (tmp_path / "b.npy").mkdir()
    np.save(tmp_path / "b.npy" / "c.NPY", np.random.default_rng(1).random((30, 4)).astype(np.float32))
    vae = CompressionVAE(**fast).fit(tmp_path)
    assert vae.n_features_in_ == 4
    assert read_array(tmp_path)[0].shape == (80, 4)  # .NPY counts too (15.)
