"""Fix by rewrite: the culprits the search localizes, replaced by equivalent computations that stay in
FP16/BF16 range (one module per family), proven equivalent in FP32 and sufficient in the low format."""
from .core import FAMILIES, FP32_TOLERANCE, HEADROOM, Candidate, Context, Editor, Rewrite, ScaledTensor, apply_all
from .match import match

__all__ = ["FAMILIES", "FP32_TOLERANCE", "HEADROOM", "Candidate", "Context", "Editor", "Rewrite", "ScaledTensor", "apply_all",
           "match"]
