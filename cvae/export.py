"""The fitted model's maps as files that run without cvae: ONNX or a torch.export program.

Every part takes raw rows or embeddings (float32, any batch size), the normalization inside
the graph. ``"transform"`` returns what ``transform`` returns: with the neighbour placement,
the placement itself (:class:`cvae.neighbors.placement.Placer`, its training rows and embedding held
in the file), else the encoder's map. ``"encoder"`` returns the posterior means, what
``transform`` returns with ``placement="encoder"``. ``"decoder"`` takes embeddings and
returns what ``inverse_transform`` returns; under a count likelihood it also takes each
row's library size, a column of shape ``(batch, 1)``. A model with covariates takes them,
encoded (:meth:`cvae.CompressionVAE.encode_covariates`), as a last input ``covariates`` of
shape ``(batch, width)`` in the encoder and the decoder; the neighbour placement does not
read them (it places rows by their data alone), and its file takes the rows alone.
"""

import contextlib
import copy
import logging
import warnings
from pathlib import Path

import torch

from ._atomic import atomic_write

__all__ = ["EXPORT_FORMATS", "PARTS", "export_module"]

# File suffix -> format.
EXPORT_FORMATS = {".onnx": "ONNX", ".pt2": "torch.export"}
PARTS = ("transform", "encoder", "decoder")
# ONNX opset of the exported graphs (onnxruntime 1.17 and later run it).
_OPSET = 18
# Rows of the example batch the graph is traced with: more than 1, so that the batch
# dimension stays symbolic rather than specialized.
_EXAMPLE_ROWS = 3


class _Part(torch.nn.Module):
    """One part of ``vae`` as a module whose ``forward`` is what is exported."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae


class _Encoder(_Part):
    def forward(self, x):
        return self.vae.embed(x)


class _ConditionedEncoder(_Part):
    def forward(self, x, covariates):
        return self.vae.embed(torch.cat([x, covariates], dim=1))


class _Placement(_Part):
    def __init__(self, vae, placer):
        super().__init__(vae)
        self.placer = placer

    def forward(self, x):
        return self.placer(self.vae.likelihood.standardize(x))


class _Decoder(_Part):
    def forward(self, z):
        return self.vae.decode_mean(z)


class _CountDecoder(_Decoder):
    def forward(self, z, library_size):
        return self.vae.decode_mean(z, library_size)


class _ConditionedDecoder(_Part):
    def forward(self, z, covariates):
        return self.vae.decode_mean(z, covariates=covariates)


class _ConditionedCountDecoder(_Part):
    def forward(self, z, library_size, covariates):
        return self.vae.decode_mean(z, library_size, covariates)


def export_module(vae, path, part, counts=False, placer=None):
    """Write ``vae``'s (a :class:`cvae.nn.VAE`) ``part`` to ``path``, in the format its
    suffix names (:data:`EXPORT_FORMATS`); return the path.

    ``counts``: the decoder takes a library size per row as a second input. ``placer``: the
    :class:`cvae.neighbors.placement.Placer` that ``"transform"`` writes, or ``None`` where the
    transform is the encoder's map.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"Cannot export to {str(path)!r}: the suffix must be one of {', '.join(EXPORT_FORMATS)}.")
    if part not in PARTS:
        raise ValueError(f"part must be one of {', '.join(map(repr, PARTS))}, got {part!r}.")
    if path.is_dir():
        raise ValueError(f"Cannot export to {str(path)!r}: it is a directory.")
    # A float32 copy on the CPU, without gradients: the flow's inference path, traced once.
    vae = copy.deepcopy(vae).to("cpu", torch.float32).requires_grad_(False)
    batch = torch.export.Dim("batch")
    conditioned = vae.n_covariates > 0
    if part in ("transform", "encoder"):
        placement = part == "transform" and placer is not None
        if placement:
            graph = _Placement(vae, copy.deepcopy(placer).to("cpu").requires_grad_(False))
        else:
            graph = _ConditionedEncoder(vae) if conditioned else _Encoder(vae)
        names, outputs = ["x"], ["embedding"]
        example = (torch.zeros(_EXAMPLE_ROWS, vae.n_features),)
        conditioned = conditioned and not placement
    else:
        graph = {(False, False): _Decoder, (True, False): _CountDecoder, (False, True): _ConditionedDecoder,
                 (True, True): _ConditionedCountDecoder}[counts, conditioned](vae)
        names = ["z", "library_size"] if counts else ["z"]
        outputs = ["x_mean"]
        example = (torch.zeros(_EXAMPLE_ROWS, vae.n_latent),)
        if counts:
            example += (torch.ones(_EXAMPLE_ROWS, 1),)
    if conditioned:
        names.append("covariates")
        example += (torch.zeros(_EXAMPLE_ROWS, vae.n_covariates),)
    graph.eval()
    dynamic = {name: {0: batch} for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".onnx":
        _require_onnx()
    with torch.no_grad(), _quiet_exporter():
        program = torch.export.export(graph, example, dynamic_shapes=dynamic)
        if suffix == ".pt2":
            _write_through(path, lambda tmp: torch.export.save(program, tmp))
        else:
            # onnxruntime optimizes the graph as it loads it; the exporter's own pass would
            # take longer than the export (a placement's refinement is unrolled, thousands of nodes)
            _write_through(path, lambda tmp: _write_onnx(program, example, tmp, names, outputs))
    return path


def _write_onnx(program, example, path, names, outputs):
    """``program`` as an ONNX file at ``path``, without the exporter's notes on each node (its
    source lines, with this machine's paths, and the torch graph: most of the file)."""
    import onnx

    torch.onnx.export(program, example, path, input_names=names, output_names=outputs, opset_version=_OPSET,
                      dynamo=True, external_data=False, optimize=False, verbose=False)
    model = onnx.load(path)
    for node in model.graph.node:
        del node.metadata_props[:]
    _cast_likes_as_casts(model)
    onnx.save(model, path)


def _cast_likes_as_casts(model):
    """Each ``CastLike(x, like)`` of the graph as ``Cast(x, to=like's type)``: the exporter
    writes one for every Python number in the model's arithmetic, and ONNX Runtime warns,
    each time it loads the file, that it cannot fold them."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {value.name: value.type.tensor_type.elem_type
             for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    types.update({tensor.name: tensor.data_type for tensor in model.graph.initializer})
    for node in model.graph.node:
        if node.op_type == "CastLike" and types.get(node.input[1]):
            to = types[node.input[1]]
            node.op_type = "Cast"
            del node.input[1:]
            del node.attribute[:]
            node.attribute.append(onnx.helper.make_attribute("to", to))


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporters' notes about themselves (torchvision's operators not registered,
    their own deprecations) from reaching the user: they say nothing about the model."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.|copyreg")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.|onnxscript")
            yield
    finally:
        logger.setLevel(level)


def _write_through(path, write):
    """Let ``write`` produce the file at a temporary path, then put its bytes at ``path``
    atomically: an existing export is replaced whole or not at all."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder) / path.name
        write(str(tmp))
        atomic_write(path, tmp.read_bytes())


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "Exporting to ONNX needs the onnx and onnxscript packages: pip install onnx onnxscript onnxruntime "
            "(in a clone: pip install -e '.[export]')."
        ) from exc
