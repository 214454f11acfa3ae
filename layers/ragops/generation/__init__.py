"""Answers from retrieved passages, with citations mapped back to their sources."""
