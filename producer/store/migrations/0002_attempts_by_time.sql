-- An endpoint's attempts by the time they were made, with their outcome: the
-- dashboard's chart counts them per hour and per day (PostgresLogStore.outcome_counts)
-- from this index alone (an index-only scan), without reading the attempts' rows.
CREATE INDEX attempts_endpoint_time ON attempts (endpoint_id, at_ms, outcome);
