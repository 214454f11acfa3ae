-- The full-text leg's matches, estimated at the scale they come in.
--
-- PostgreSQL plans a set-returning function as returning 1,000 rows, and the search's
-- collection condition on them as keeping 1 in 200 (it has no statistics for a function's
-- output): 5 rows. For 5 rows the planner joins each match to its document by an index
-- probe, about 3 us a match once the documents table outgrows a few pages. A question of
-- common words matches thousands of chunks: at 100,000 chunks and 2,448 documents, 14,184
-- matches spent 44 ms of a 131 ms search on those probes. Estimated at 100,000 rows (500
-- after the condition), the planner hashes the documents instead (2 ms there); over the 50
-- benchmark questions the search took 74 ms at the median against 98 (p95 158 against 226)
-- with the same results, and at 10,000 chunks, where the documents were hashed already,
-- the same time.

ALTER FUNCTION ragops_lexical_matches(tsquery[]) ROWS 100000;
