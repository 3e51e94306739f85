"""The way in: row sources (arrays, files, sparse matrices, AnnData), array checks, labels,
normalization, rows and batches, and preparing a fit's data. Nothing runs at import."""
