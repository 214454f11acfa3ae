-- Full-text matches through the GIN index for the API's role.
--
-- Under row-level security PostgreSQL evaluates a table's policy before any condition that
-- is not leakproof, and `tsvector @@ tsquery` is not: so the API's full-text condition can
-- never be an index condition, and every chunk of every collection is read and tested. This
-- function runs as the table owner and applies the policy's own condition itself, so the
-- GIN index answers the query. It returns what ranking needs and no text: the chunk, its
-- document and collection (for the caller's filters), and how many of `p_parts` it matches.
CREATE FUNCTION ragops_lexical_matches(p_query tsquery, p_parts tsquery[])
RETURNS TABLE (id bigint, document_id uuid, collection text, hits bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.id, c.document_id, c.collection,
           (SELECT count(*) FROM unnest(p_parts) AS part WHERE c.tsv @@ part)
    FROM chunks c
    WHERE c.collection = current_setting('ragops.collection', true) AND c.tsv @@ p_query;
END;

REVOKE ALL ON FUNCTION ragops_lexical_matches(tsquery, tsquery[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ragops_lexical_matches(tsquery, tsquery[]) TO ragops_app;
