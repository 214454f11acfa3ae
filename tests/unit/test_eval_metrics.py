"""Ranking metrics, answer checks and the baseline gate, on hand-computed examples."""

from __future__ import annotations

from typing import Any

import pytest

from ragops.evaluation.answers import AnswerCheck, answer_scores, check_answer, holds_phrase
from ragops.evaluation.dataset import Query
from ragops.evaluation.gate import Regression, baseline_json, regressions
from ragops.evaluation.metrics import (
    METRICS,
    average_precision_at,
    distinct,
    mean_scores,
    mrr_at,
    ndcg_at,
    precision_at,
    recall_at,
)
from ragops.generation.answer import NO_ANSWER, Answer, Citation

# Graded judgements: a is highly relevant, b relevant, d marginal, c judged not relevant.
JUDGED = {"a": 3, "b": 2, "c": 0, "d": 1}


# --- nDCG ----------------------------------------------------------------------------------


def test_ndcg_uses_the_grade_as_gain_and_a_log2_discount() -> None:
    # DCG@5 of c a x d b = 0/log2(2) + 3/log2(3) + 0/log2(4) + 1/log2(5) + 2/log2(6)
    #                    = 0 + 1.892789 + 0 + 0.430677 + 0.773706 = 3.097172
    # ideal order a b d c: 3/log2(2) + 2/log2(3) + 1/log2(4) + 0 = 3 + 1.261860 + 0.5 = 4.761860
    # nDCG@5 = 3.097172 / 4.761860 = 0.650412
    assert ndcg_at(["c", "a", "x", "d", "b"], JUDGED, 5) == pytest.approx(0.650412, abs=1e-6)


def test_ndcg_cuts_both_the_ranking_and_the_ideal_at_k() -> None:
    # DCG@3 of c a x = 3/log2(3) = 1.892789; ideal@3 = 3 + 2/log2(3) + 1/log2(4) = 4.761860
    # nDCG@3 = 1.892789 / 4.761860 = 0.397490
    assert ndcg_at(["c", "a", "x", "d", "b"], JUDGED, 3) == pytest.approx(0.397490, abs=1e-6)
    # Ideal@1 = 3 (a alone); b first gains 2/log2(2) = 2: nDCG@1 = 2/3
    assert ndcg_at(["b", "a"], JUDGED, 1) == pytest.approx(2 / 3)


def test_ndcg_is_one_for_the_ideal_order_and_zero_without_relevant_results() -> None:
    assert ndcg_at(["a", "b", "d", "c"], JUDGED, 10) == pytest.approx(1.0)
    assert ndcg_at(["c", "x", "y"], JUDGED, 10) == 0.0
    assert ndcg_at([], JUDGED, 10) == 0.0


def test_ndcg_of_a_query_with_no_relevant_judgement_is_zero() -> None:
    assert ndcg_at(["c"], {"c": 0}, 10) == 0.0


# --- MRR, recall, precision ----------------------------------------------------------------


def test_mrr_is_the_inverse_rank_of_the_first_document_graded_above_zero() -> None:
    # c is judged but graded 0: the first relevant one is a, at rank 3.
    assert mrr_at(["x", "c", "a", "b"], JUDGED, 10) == pytest.approx(1 / 3)
    assert mrr_at(["b"], JUDGED, 10) == 1.0


def test_mrr_is_zero_when_the_first_relevant_document_lies_beyond_k() -> None:
    assert mrr_at(["x", "c", "a"], JUDGED, 2) == 0.0
    assert mrr_at([], JUDGED, 10) == 0.0


def test_recall_is_the_share_of_relevant_documents_in_the_top_k() -> None:
    # Relevant: a, b, d (c is graded 0). The top 4 hold a and d: 2/3.
    assert recall_at(["c", "a", "x", "d", "b"], JUDGED, 4) == pytest.approx(2 / 3)
    assert recall_at(["c", "a", "x", "d", "b"], JUDGED, 5) == 1.0
    assert recall_at(["x", "y"], JUDGED, 10) == 0.0
    assert recall_at(["c"], {"c": 0}, 10) == 0.0


def test_precision_divides_by_k_even_when_fewer_results_came_back() -> None:
    # Two results, both relevant: 2 / 10, not 2 / 2.
    assert precision_at(["a", "b"], JUDGED, 10) == pytest.approx(0.2)
    # The top 3 of c a x d hold one relevant document: 1/3.
    assert precision_at(["c", "a", "x", "d"], JUDGED, 3) == pytest.approx(1 / 3)
    assert precision_at([], JUDGED, 10) == 0.0


# --- average precision ---------------------------------------------------------------------


def test_average_precision_averages_precision_at_each_hit_over_all_relevant() -> None:
    # Hits at ranks 1, 3 and 5: precision 1/1, 2/3 and 3/5; (1 + 0.6667 + 0.6) / 3 = 0.755556
    assert average_precision_at(["a", "x", "b", "y", "d"], JUDGED, 100) == pytest.approx(
        0.755556, abs=1e-6
    )


def test_average_precision_counts_relevant_documents_missed_as_zero() -> None:
    # Cut at 3: hits at ranks 1 and 3 only, still over 3 relevant: (1 + 2/3) / 3 = 0.555556
    assert average_precision_at(["a", "x", "b", "y", "d"], JUDGED, 3) == pytest.approx(
        0.555556, abs=1e-6
    )
    assert average_precision_at(["x"], JUDGED, 100) == 0.0
    assert average_precision_at([], JUDGED, 100) == 0.0


# --- aggregation ---------------------------------------------------------------------------


def test_distinct_keeps_each_document_at_its_best_rank() -> None:
    assert distinct(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_mean_scores_average_over_judged_queries_counting_a_missing_ranking_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}

    scores = mean_scores({"q1": ["a"], "unjudged": ["b"]}, qrels)

    assert set(scores) == set(METRICS)
    assert scores["mrr@10"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert scores["precision@10"] == pytest.approx(0.05)  # (1/10 + 0) / 2


# --- answers -------------------------------------------------------------------------------


def _citation(index: int) -> Citation:
    return Citation(index, "doc", "beir://doc", None, None, "snippet", 0.9)


def _answer(text: str, cited: int, mode: Any = "generative") -> Answer:
    return Answer(text, [_citation(i) for i in range(1, cited + 1)], mode)


def test_holds_phrase_ignores_case_and_line_breaks() -> None:
    assert holds_phrase("The Moon's\n  GRAVITY pulls", ["moon's gravity"])
    assert not holds_phrase("The Moon pulls", ["moon's gravity", "sun"])


def test_a_cited_answer_counts_as_answered_and_its_chunks_are_checked() -> None:
    query = Query("q", "what causes tides?", {"answer": ["Moon's gravity"]})

    check = check_answer(query, _answer("According to [1], ...", 2), ["the moon's gravity", "wind"])

    assert (check.answered, check.refused, check.cited, check.cited_correct) == (
        True,
        False,
        2,
        1,
    )


def test_a_no_answer_from_the_llm_or_the_service_is_a_refusal() -> None:
    query = Query("q", "who won?", {"kind": "unanswerable"})

    from_llm = check_answer(query, _answer(f"Sorry. {NO_ANSWER}", 0), [])
    from_service = check_answer(query, _answer(NO_ANSWER, 0, "no_answer"), [])
    uncited = check_answer(query, _answer("Brazil won.", 0), [])

    assert (from_llm.refused, from_service.refused, uncited.refused) == (True, True, False)
    assert not any(c.answered for c in (from_llm, from_service, uncited))
    assert from_llm.cited_correct is None  # no answer phrase: nothing to check


def test_answer_scores_share_each_measure_over_its_own_queries() -> None:
    def check(unanswerable: bool, answered: bool, cited: int, correct: int | None) -> AnswerCheck:
        return AnswerCheck(
            unanswerable, "generative", None, answered, not answered, cited, correct, 10.0
        )

    scores = answer_scores(
        [
            check(False, True, 2, 1),
            check(False, True, 1, 1),
            check(False, False, 0, 0),
            check(False, True, 3, None),  # no answer phrase: left out of citation precision
            check(True, False, 0, None),
            check(True, True, 1, None),
        ]
    )

    assert scores["citation_precision"] == 0.6667  # (1 + 1) / (2 + 1), to 4 decimals
    assert scores["answered"] == pytest.approx(0.75)  # 3 of 4 answerable
    assert scores["correct_refusals"] == pytest.approx(0.5)  # 1 of 2 unanswerable
    assert (scores["answerable_queries"], scores["unanswerable_queries"]) == (4, 2)


def test_answer_scores_without_unanswerable_queries_leave_refusals_unmeasured() -> None:
    scores = answer_scores([])

    assert scores["correct_refusals"] is None
    assert scores["citation_precision"] is None


# --- the gate ------------------------------------------------------------------------------


def _result(**figures: float) -> dict[str, Any]:
    metrics = {"ndcg@10": 0.5, "mrr@10": 0.5, "recall@10": 0.5, "precision@10": 0.1}
    metrics |= {"map@100": 0.4, **figures}
    modes = {mode: dict(metrics) for mode in ("lexical", "vector", "hybrid", "hybrid+rerank")}
    return {
        **metrics,
        "latency_p50_ms": 5.0,
        "mode": "hybrid+rerank",
        "modes": modes,
        "queries": 2,
        "corpus_documents": 3,
        "chunks": 4,
        "dataset": {},
        "settings": {},
    }


def test_the_gate_names_each_metric_below_baseline_less_tolerance() -> None:
    baseline = {"hybrid+rerank": {"ndcg@10": 0.53, "mrr@10": 0.52}, "lexical": {"map@100": 0.5}}

    failed = regressions(_result(), baseline, tolerance=0.02)

    # ndcg 0.50 < 0.53 - 0.02; mrr 0.50 is exactly 0.52 - 0.02 and passes; map 0.4 < 0.48
    assert failed == [
        Regression("hybrid+rerank", "ndcg@10", 0.5, 0.53, 0.02),
        Regression("lexical", "map@100", 0.4, 0.5, 0.02),
    ]
    assert str(failed[0]) == (
        "hybrid+rerank ndcg@10: 0.5000, below the baseline 0.5300 - tolerance 0.02"
    )


def test_a_baseline_written_from_a_result_passes_its_own_gate_with_no_tolerance() -> None:
    result = _result()
    written = baseline_json(result)
    baseline = {mode: dict(figures) for mode, figures in written["modes"].items()}

    assert "latency_p50_ms" not in written
    assert regressions(result, baseline, tolerance=0.0) == []
