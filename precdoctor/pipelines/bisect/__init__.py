"""``precdoctor bisect`` as one package (pipeline.py: the stages in order)."""
from .params import BisectParams
from .pipeline import run

__all__ = ["BisectParams", "run"]
