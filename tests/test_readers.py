"""Reading arrays and labels from files (cvae.data.readers, offered by cvae.files): the formats,
and every unreadable file named."""

import warnings

import numpy as np
import pytest

from cvae.data.readers import read_array, read_labels, read_npy_directory


@pytest.fixture
def X():
    return np.arange(12, dtype=np.float64).reshape(4, 3)


def test_csv_header_and_label_column(tmp_path, X):
    (tmp_path / "t.csv").write_text("a,b,label\n" + "\n".join(",".join(map(str, row)) for row in X) + "\n")
    data, labels = read_array(tmp_path / "t.csv", label_column="label")
    np.testing.assert_array_equal(data, X[:, :2])
    np.testing.assert_array_equal(labels, X[:, 2])
    data, labels = read_array(tmp_path / "t.csv", label_column="0")
    np.testing.assert_array_equal(labels, X[:, 0])
    with pytest.raises(ValueError, match=r"no column named 'colour'; it has \['a', 'b', 'label'\]"):
        read_array(tmp_path / "t.csv", label_column="colour")
    with pytest.raises(ValueError, match="label column 5 is out of range for 3 columns"):
        read_array(tmp_path / "t.csv", label_column=5)


def test_directory_tree_of_vectors_and_blocks_in_sorted_order(tmp_path, X):
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "b" / "2.npy", X[3])
    np.save(tmp_path / "a.npy", X[:2])  # a block of rows
    np.save(tmp_path / "b" / "1.npy", X[2])
    np.testing.assert_array_equal(read_npy_directory(tmp_path), X)
    np.testing.assert_array_equal(read_array(tmp_path)[0], X)


def test_directory_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="No .npy files found under"):
        read_npy_directory(tmp_path)
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.save(tmp_path / "b.npy", np.zeros(4))
    with pytest.raises(ValueError, match=r"different numbers of features: \[3, 4\]"):
        read_npy_directory(tmp_path)


def test_unreadable_inputs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="No such file or directory"):
        read_array(tmp_path / "missing.npy")
    (tmp_path / "x.txt").write_text("1 2")
    with pytest.raises(ValueError, match=r"expected a directory or one of .npy, .npz, .csv files"):
        read_array(tmp_path / "x.txt")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="rows of different lengths"):
        read_array(tmp_path / "ragged.csv")
    (tmp_path / "words.csv").write_text("1,2\n3,x\n")
    with pytest.raises(ValueError, match="non-numeric values .*a column of labels is named with label_column"):
        read_array(tmp_path / "words.csv")
    with pytest.raises(ValueError, match="non-numeric values outside the label column"):
        read_array(tmp_path / "words.csv", label_column=0)
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2\); expected rows of samples"):
        read_array(tmp_path / "cube.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        read_array(tmp_path / "objects.npy")  # never unpickles


def test_labels_from_text_with_header_npy_or_strings(tmp_path):
    (tmp_path / "l.csv").write_text("label\n3\n1\n2\n")
    np.testing.assert_array_equal(read_labels(tmp_path / "l.csv"), [3, 1, 2])
    (tmp_path / "l.txt").write_text("cat\ndog\n")
    np.testing.assert_array_equal(read_labels(tmp_path / "l.txt"), ["cat", "dog"])
    np.save(tmp_path / "l.npy", np.array([0, 1]))
    np.testing.assert_array_equal(read_labels(tmp_path / "l.npy"), [0, 1])


def test_a_damaged_npz_is_named_and_its_file_closed(tmp_path):
    import gc

    from cvae.files import read_labels
    from cvae.data.sources import is_sparse_npz, load_sparse_npz

    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not an archive" * 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not is_sparse_npz(path)
        for read in (read_array, read_labels, load_sparse_npz):
            with pytest.raises(ValueError, match=r"bad\.npz.*not a readable"):
                read(path)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
