"""Opening a model: what every command starts with (a module of its own, above view, loading and bounds)."""
from __future__ import annotations

from .bounds import check_graph
from .loading import load_model
from .view import GraphView, view


def open_model(path) -> GraphView:
    """Load, check and view the model at ``path``: what every command starts with, once."""
    v = view(load_model(path), copy=False)
    check_graph(v, str(path))  # before any work: what the model asks for is within the limits
    return v
