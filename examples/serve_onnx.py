"""Embed rows with an exported model, with onnxruntime and numpy alone: cvae is not imported.

    cvae export runs/mnist transform.onnx        # once, where cvae is installed
    python examples/serve_onnx.py transform.onnx rows.npy [-o embedding.npy]

The file holds the normalization and, by default, the neighbour placement with its training
rows, so it takes raw rows as the model was trained on them (float32, any number of rows)
and returns what ``transform`` returns. A file written with ``--part encoder`` returns the
encoder's map instead (``placement="encoder"``). A service needs
``pip install onnxruntime numpy`` and the file, nothing else.
"""

import argparse
import sys

import numpy as np
import onnxruntime


def embed(session, rows, batch_size=1024):
    """The embedding of ``rows``, ``batch_size`` rows per call (the placement holds batch rows
    times training rows distances at once)."""
    name = session.get_inputs()[0].name
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    return np.concatenate([session.run(None, {name: rows[i : i + batch_size]})[0]
                           for i in range(0, len(rows), batch_size)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a file written by `cvae export` (.onnx)")
    parser.add_argument("rows", help="a .npy file of rows to embed")
    parser.add_argument("-o", "--output", help="where to save the embedding (.npy); default: print the first rows")
    args = parser.parse_args(argv)
    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    rows = np.load(args.rows, allow_pickle=False)
    if rows.ndim != 2 or rows.shape[1] != shape[1]:
        raise SystemExit(f"{args.rows} holds an array of shape {rows.shape}; the model takes rows of {shape[1]}.")
    Z = embed(session, rows)
    if args.output:
        np.save(args.output, Z)
        print(f"wrote the embedding of {len(Z)} rows to {args.output}")
    else:
        print(Z[:5])
    assert "cvae" not in sys.modules  # served without the package
    return Z


if __name__ == "__main__":
    main()
