"""Neighbours: the graph search, the placement of unseen rows, the label graph. A leaf: it
imports nothing from the rest of the package. Nothing runs at import."""
