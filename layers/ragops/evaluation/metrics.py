"""Ranking metrics, pure: a ranked list of distinct ids against graded judgements.

`judged` maps an id to its relevance grade, as a qrels file gives it; a grade above 0 is
relevant, ids not in it are not. The definitions follow trec_eval (and so BEIR):
nDCG with gain = grade and a log2(rank + 1) discount, its ideal from the judged grades.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

Ranking = Sequence[str]
Judged = Mapping[str, int]
Metric = Callable[[Ranking, Judged], float]


def distinct(ids: Iterable[str]) -> list[str]:
    """Each id once, at its first (best) rank: chunks of one document count as the document."""
    return list(dict.fromkeys(ids))


def _relevant(judged: Judged) -> set[str]:
    return {doc for doc, grade in judged.items() if grade > 0}


def dcg_at(ranked: Ranking, judged: Judged, k: int) -> float:
    """Discounted cumulative gain of the top k: sum of grade / log2(rank + 1)."""
    return sum(
        max(judged.get(doc, 0), 0) / math.log2(rank + 1)
        for rank, doc in enumerate(ranked[:k], start=1)
    )


def ndcg_at(ranked: Ranking, judged: Judged, k: int) -> float:
    """DCG@k over the DCG@k of the judged documents in the best order; 0 with none relevant."""
    ideal_order = sorted(judged, key=lambda doc: judged[doc], reverse=True)
    ideal = dcg_at(ideal_order, judged, k)
    return dcg_at(ranked, judged, k) / ideal if ideal > 0 else 0.0


def mrr_at(ranked: Ranking, judged: Judged, k: int) -> float:
    """1 / rank of the first relevant document in the top k; 0 when there is none."""
    relevant = _relevant(judged)
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


def recall_at(ranked: Ranking, judged: Judged, k: int) -> float:
    """Share of the relevant documents found in the top k; 0 with none relevant."""
    relevant = _relevant(judged)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def precision_at(ranked: Ranking, judged: Judged, k: int) -> float:
    """Relevant documents in the top k, divided by k (a short list is not rewarded)."""
    return len(_relevant(judged).intersection(ranked[:k])) / k


def average_precision_at(ranked: Ranking, judged: Judged, k: int) -> float:
    """Mean of precision@rank at each relevant document's rank within the top k, over all
    relevant documents (those never retrieved add 0)."""
    relevant = _relevant(judged)
    if not relevant:
        return 0.0
    found = 0
    total = 0.0
    for rank, doc in enumerate(ranked[:k], start=1):
        if doc in relevant:
            found += 1
            total += found / rank
    return total / len(relevant)


def _cut(metric: Callable[[Ranking, Judged, int], float], k: int) -> Metric:
    return lambda ranked, judged: metric(ranked, judged, k)


# The metrics reported (and gated), by the key they have in results and baselines.
METRICS: dict[str, Metric] = {
    "ndcg@10": _cut(ndcg_at, 10),
    "mrr@10": _cut(mrr_at, 10),
    "recall@10": _cut(recall_at, 10),
    "precision@10": _cut(precision_at, 10),
    "map@100": _cut(average_precision_at, 100),
}


def mean_scores(rankings: Mapping[str, Ranking], qrels: Mapping[str, Judged]) -> dict[str, float]:
    """Each metric averaged over the judged queries (a query without a ranking scores 0)."""
    scores = {}
    for name, metric in METRICS.items():
        values = [metric(rankings.get(query, []), judged) for query, judged in qrels.items()]
        scores[name] = sum(values) / len(values) if values else 0.0
    return scores
