"""The pin search: localization, the search strategy, its evaluator and journal, and the baselines."""
from .baselines import Baselines, OurResult, PrefixBisection, RangeRule, prefix_bisection, range_rule
from .evaluator import BudgetExhausted, Evaluator
from .journal import Evaluation, Journal, code_digest, fingerprint
from .localize import Localization, candidates, rank
from .strategy import SearchResult, minimize, search

__all__ = [
    "Baselines", "BudgetExhausted", "Evaluation", "Evaluator", "Journal", "Localization", "OurResult", "PrefixBisection",
    "RangeRule", "SearchResult", "candidates", "code_digest", "fingerprint", "minimize", "prefix_bisection", "range_rule",
    "rank", "search",
]
