"""The model as precdoctor sees it: loading, naming, weights, the graph view, attributes and constants, patterns,
shapes, derived models."""
from .assemble import derived_model
from .attributes import attr, attrs, const_array, const_scalar
from .loading import external_files, load_model
from .naming import Namer, name_nodes
from .patterns import LayerNormPattern, aliases, is_square, layernorm_patterns
from .shapes import concrete_shapes, concrete_sizes, node_flops, peak_activation_elements, value_shape, with_input_shapes
from .opening import open_model
from .view import FLOAT, GraphView, ViewCache, subgraph_inputs, view
from .weights import WeightStore, inline_bytes

__all__ = [
    "FLOAT", "GraphView", "LayerNormPattern", "Namer", "ViewCache", "WeightStore", "aliases", "attr", "attrs", "concrete_shapes",
    "concrete_sizes", "peak_activation_elements", "value_shape", "const_array", "const_scalar", "derived_model", "external_files", "inline_bytes", "is_square",
    "layernorm_patterns", "load_model", "name_nodes", "node_flops", "open_model", "subgraph_inputs", "view", "with_input_shapes",
]
