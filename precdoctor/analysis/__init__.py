"""Judging outputs: flat graphs, ranges, comparison, acceptance, verdicts, risks."""
