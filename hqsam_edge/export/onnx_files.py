"""Saving ONNX graphs, and the external data files they name: one rule for every graph this package writes.

Protobuf caps a serialised model at 2 GiB, so larger graphs (ViT-H's encoder,
and every graph made from it) keep their tensors in one external file beside
the graph (``<graph>.onnx.data``); the graph names it relative to itself.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ArtifactError

# Protobuf's 2 GiB limit, less room for the graph structure around the tensors.
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**20


def save_onnx(model, path: str | Path, *, external: bool | None = None) -> Path:
    """Write ``model`` to ``path``; its tensors go to ``<name>.data`` beside it when ``external`` (default:
    when the model is too large for one protobuf)."""
    import onnx

    path = Path(path)
    if external is None:
        external = model.ByteSize() >= EXTERNAL_DATA_THRESHOLD
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save(model, str(path))
    return path


def _tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def external_data_files(path: str | Path) -> list[str]:
    """The external data files the graph at ``path`` names (relative to its folder), read from the graph."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError) as exc:
        raise ArtifactError(f"{path} is not a readable ONNX graph ({type(exc).__name__}); export / build it again"
                            ) from None
    names = sorted({ExternalDataInfo(t).location for t in _tensors(model.graph) if uses_external_data(t)})
    for name in names:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ArtifactError(f"{path} names external data outside its folder ({name}); export it again")
    return names


def graph_bytes(path: str | Path) -> int:
    """The size of a graph with its external data."""
    path = Path(path)
    return path.stat().st_size + sum((path.parent / name).stat().st_size for name in external_data_files(path))


def needs_external_data(path: str | Path) -> bool:
    """Whether a graph made from the one at ``path`` must keep its tensors apart (see ``save_onnx``)."""
    return graph_bytes(path) >= EXTERNAL_DATA_THRESHOLD
