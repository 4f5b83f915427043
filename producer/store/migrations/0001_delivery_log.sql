-- The delivery log: events, deliveries, attempts and per-day state counts.
-- Times are milliseconds since the epoch (bigint), as everywhere in cliq-webhooks.
-- The four big tables are partitioned by day (UTC) on the creation time of the
-- delivery they belong to; producer/store/partitions.py creates and drops the
-- partitions (named <table>_pYYYYMMDD). Retention drops whole partitions.

-- Event ids, unique across all days. A partitioned table's unique index must contain
-- its partition key, so uniqueness beyond one day needs this plain table; it is the
-- one thing retention deletes row by row (about 60 bytes an event, see docs).
CREATE TABLE event_ids (
    id text PRIMARY KEY,
    published_ms bigint NOT NULL
);
CREATE INDEX event_ids_published ON event_ids (published_ms);

-- An event's body, stored once whatever its fan-out. published_ms is when it was
-- published: its deliveries' created_ms, so an event lives in its deliveries' day.
CREATE TABLE events (
    id text NOT NULL,
    published_ms bigint NOT NULL,
    created_ms bigint NOT NULL,
    type text NOT NULL,
    workspace_id text NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (id, published_ms)
) PARTITION BY RANGE (published_ms);

-- One event to one endpoint. created_ms never changes, so a delivery updated days
-- later is updated in place, in its own partition; (id, created_ms) is its key.
CREATE TABLE deliveries (
    id text NOT NULL,
    created_ms bigint NOT NULL,
    event_id text NOT NULL,
    endpoint_id text NOT NULL,
    state text NOT NULL CHECK (state IN ('queued', 'scheduled', 'delivered', 'dead')),
    attempts_made integer NOT NULL,
    updated_ms bigint NOT NULL,
    next_due_ms bigint,
    last_error text,
    dead_ms bigint,
    PRIMARY KEY (id, created_ms)
) PARTITION BY RANGE (created_ms);
-- An endpoint's deliveries newest first (CLI attempts, the recent summary).
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_ms, id);
-- An event's deliveries.
CREATE INDEX deliveries_event ON deliveries (event_id);
-- Dead deliveries of an endpoint by time of death (replay since a time).
CREATE INDEX deliveries_dead ON deliveries (endpoint_id, dead_ms) WHERE state = 'dead';

-- One HTTP attempt. It carries its delivery's created_ms as partition key, so it lands
-- in its delivery's partition and leaves with it; endpoint and event are copied in so
-- that the log's listing reads one index.
CREATE TABLE attempts (
    delivery_id text NOT NULL,
    delivery_created_ms bigint NOT NULL,
    number integer NOT NULL,
    endpoint_id text NOT NULL,
    event_id text NOT NULL,
    at_ms bigint NOT NULL,
    status integer,
    error text,
    latency_ms double precision NOT NULL,
    response text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
    next_attempt_ms bigint,
    PRIMARY KEY (delivery_id, delivery_created_ms, number)
) PARTITION BY RANGE (delivery_created_ms);
-- The delivery log of an endpoint: newest deliveries first, their attempts newest
-- first (keyset pagination on the last three columns), and the same by outcome.
CREATE INDEX attempts_endpoint
    ON attempts (endpoint_id, delivery_created_ms, delivery_id, number);
CREATE INDEX attempts_endpoint_outcome
    ON attempts (endpoint_id, outcome, delivery_created_ms, delivery_id, number);

-- How many deliveries created on a day are in each state, per endpoint: the status
-- counts without counting rows. Updated with every batch; dropped with its day.
CREATE TABLE delivery_counts (
    day_ms bigint NOT NULL,
    endpoint_id text NOT NULL,
    state text NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (endpoint_id, state, day_ms)
) PARTITION BY RANGE (day_ms);

-- Rows created before this time belong to dropped partitions: writes skip them.
CREATE TABLE log_horizon (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    ms bigint NOT NULL
);
INSERT INTO log_horizon (ms) VALUES (0);

-- Add the state changes of `moved` (endpoint, created_ms, old state or NULL for a new
-- delivery, new state) to delivery_counts. Called last in every transaction that
-- changes states, with rows sorted, so concurrent writers lock counts in one order.
CREATE FUNCTION cliq_count_moves(
    m_endpoint text[], m_created bigint[], m_was text[], m_now text[]
) RETURNS void LANGUAGE sql AS $$
    INSERT INTO delivery_counts AS c (day_ms, endpoint_id, state, n)
    SELECT day_ms, endpoint_id, state, sum(delta)
    FROM (
        SELECT created - created % 86400000 AS day_ms, endpoint AS endpoint_id, was AS state,
               -1 AS delta
        FROM unnest(m_endpoint, m_created, m_was) AS m(endpoint, created, was)
        WHERE was IS NOT NULL
        UNION ALL
        SELECT created - created % 86400000, endpoint, now, 1
        FROM unnest(m_endpoint, m_created, m_now) AS m(endpoint, created, now)
    ) AS deltas
    GROUP BY day_ms, endpoint_id, state
    HAVING sum(delta) <> 0
    ORDER BY endpoint_id, state, day_ms
    ON CONFLICT (endpoint_id, state, day_ms) DO UPDATE SET n = c.n + excluded.n;
$$;

-- Write one batch in one statement (one round trip, one transaction): events with
-- the deliveries they fanned out to, and attempt outcomes. Idempotent: a batch written
-- twice leaves every row once. A delivery moves to the state of its highest-numbered
-- attempt, whatever order batches arrive in; an outcome whose delivery was not written
-- yet creates it. Rows older than log_horizon (their day was dropped) are skipped.
CREATE FUNCTION cliq_log_write(
    e_id text[], e_published bigint[], e_created bigint[], e_type text[],
    e_workspace text[], e_body bytea[],
    d_id text[], d_created bigint[], d_event text[], d_endpoint text[],
    o_delivery text[], o_created bigint[], o_event text[], o_endpoint text[],
    o_number integer[], o_at bigint[], o_status integer[], o_error text[],
    o_latency double precision[], o_response text[], o_outcome text[], o_next bigint[],
    OUT events_new integer, OUT deliveries_new integer, OUT attempts_new integer,
    OUT deliveries_moved integer, OUT expired integer
) LANGUAGE plpgsql AS $$
DECLARE
    horizon bigint;
    new_endpoint text[];
    new_created bigint[];
    new_state text[];
    moved_endpoint text[];
    moved_created bigint[];
    moved_was text[];
    moved_now text[];
BEGIN
    SELECT ms INTO horizon FROM log_horizon;
    SELECT (SELECT count(*) FROM unnest(e_published) AS t(ms) WHERE ms < horizon)
         + (SELECT count(*) FROM unnest(d_created) AS t(ms) WHERE ms < horizon)
         + (SELECT count(*) FROM unnest(o_created) AS t(ms) WHERE ms < horizon)
      INTO expired;

    WITH fresh AS (
        INSERT INTO event_ids (id, published_ms)
        SELECT id, published FROM unnest(e_id, e_published) AS t(id, published)
        WHERE published >= horizon
        ORDER BY id
        ON CONFLICT DO NOTHING
        RETURNING id
    )
    INSERT INTO events (id, published_ms, created_ms, type, workspace_id, body)
    SELECT t.id, t.published, t.created, t.type, t.workspace, t.body
    FROM unnest(e_id, e_published, e_created, e_type, e_workspace, e_body)
        AS t(id, published, created, type, workspace, body)
    JOIN fresh USING (id);
    GET DIAGNOSTICS events_new = ROW_COUNT;

    -- Every delivery named in the batch exists from here on. A new one is written in
    -- the state of its highest attempt in the batch (queued if none): one row version,
    -- where an insert then an update would write two.
    WITH named AS (
        SELECT DISTINCT ON (id) *
        FROM (
            SELECT id, created, event, endpoint, NULL::integer, NULL::bigint, NULL::integer,
                   NULL::text, NULL::text, NULL::bigint
            FROM unnest(d_id, d_created, d_event, d_endpoint) AS t(id, created, event, endpoint)
            UNION ALL
            SELECT * FROM unnest(o_delivery, o_created, o_event, o_endpoint, o_number, o_at,
                                 o_status, o_error, o_outcome, o_next)
        ) AS t(id, created, event, endpoint, number, at, status, error, outcome, next)
        WHERE created >= horizon
        ORDER BY id, number DESC NULLS LAST
    ), inserted AS (
        INSERT INTO deliveries (id, created_ms, event_id, endpoint_id, state, attempts_made,
                                updated_ms, next_due_ms, last_error, dead_ms)
        SELECT id, created, event, endpoint,
               CASE outcome WHEN 'retry' THEN 'scheduled' ELSE coalesce(outcome, 'queued') END,
               coalesce(number, 0), coalesce(at, created),
               CASE outcome WHEN 'retry' THEN next END,
               CASE WHEN outcome <> 'delivered' THEN coalesce(error, 'HTTP ' || status) END,
               CASE outcome WHEN 'dead' THEN at END
        FROM named
        ORDER BY created, id
        ON CONFLICT DO NOTHING
        RETURNING endpoint_id, created_ms, state
    )
    SELECT coalesce(array_agg(endpoint_id), '{}'), coalesce(array_agg(created_ms), '{}'),
           coalesce(array_agg(state), '{}')
      INTO new_endpoint, new_created, new_state
      FROM inserted;
    deliveries_new := cardinality(new_endpoint);

    INSERT INTO attempts (delivery_id, delivery_created_ms, number, endpoint_id, event_id,
                          at_ms, status, error, latency_ms, response, outcome, next_attempt_ms)
    SELECT * FROM unnest(o_delivery, o_created, o_number, o_endpoint, o_event, o_at,
                         o_status, o_error, o_latency, o_response, o_outcome, o_next)
        AS t(delivery, created, number, endpoint, event, at, status, error, latency,
             response, outcome, next)
    WHERE created >= horizon
    ORDER BY created, delivery, number
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS attempts_new = ROW_COUNT;

    -- Move each existing delivery to the state of its highest attempt, if newer than
    -- its own (those just inserted already are). `old` locks the rows (in key order)
    -- and reads their state as it is now, so the counts move from the state really
    -- replaced; it carries the attempt's columns, so the update joins the table once.
    WITH latest AS (
        SELECT DISTINCT ON (delivery) *
        FROM unnest(o_delivery, o_created, o_number, o_at, o_status, o_error, o_outcome,
                    o_next)
            AS t(delivery, created, number, at, status, error, outcome, next)
        WHERE created >= horizon
        ORDER BY delivery, number DESC
    ), old AS (
        SELECT d.id, d.created_ms, d.state, l.number, l.at, l.status, l.error, l.outcome,
               l.next
        FROM deliveries AS d
        JOIN latest AS l ON d.id = l.delivery AND d.created_ms = l.created
        WHERE d.attempts_made < l.number
        ORDER BY d.created_ms, d.id
        FOR UPDATE OF d
    ), moved AS (
        UPDATE deliveries AS d SET
            state = CASE o.outcome WHEN 'retry' THEN 'scheduled' ELSE o.outcome END,
            attempts_made = o.number,
            updated_ms = o.at,
            next_due_ms = CASE o.outcome WHEN 'retry' THEN o.next END,
            last_error = CASE o.outcome
                WHEN 'delivered' THEN d.last_error
                ELSE coalesce(o.error, 'HTTP ' || o.status) END,
            dead_ms = CASE o.outcome WHEN 'dead' THEN o.at END
        FROM old AS o
        WHERE d.id = o.id AND d.created_ms = o.created_ms AND d.attempts_made < o.number
        RETURNING d.endpoint_id, d.created_ms, o.state AS was, d.state AS now
    )
    SELECT coalesce(array_agg(endpoint_id), '{}'), coalesce(array_agg(created_ms), '{}'),
           coalesce(array_agg(was), '{}'), coalesce(array_agg(now), '{}')
      INTO moved_endpoint, moved_created, moved_was, moved_now
      FROM moved;
    deliveries_moved := cardinality(moved_endpoint);

    PERFORM cliq_count_moves(
        new_endpoint || moved_endpoint,
        new_created || moved_created,
        array_fill(NULL::text, ARRAY[cardinality(new_endpoint)]) || moved_was,
        new_state || moved_now
    );
END;
$$;

-- A replay: those of these deliveries that are dead go back to queued (their next
-- attempt is numbered after their last). Returns the ids moved; a second replay of
-- the same ids moves nothing.
CREATE FUNCTION cliq_log_replayed(r_id text[], r_at bigint) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    moved_id text[];
    moved_endpoint text[];
    moved_created bigint[];
BEGIN
    WITH old AS (
        SELECT id, created_ms FROM deliveries
        WHERE id = ANY(r_id) AND state = 'dead'
        ORDER BY created_ms, id
        FOR UPDATE
    ), moved AS (
        UPDATE deliveries AS d
        SET state = 'queued', dead_ms = NULL, next_due_ms = NULL, updated_ms = r_at
        FROM old AS o
        WHERE d.id = o.id AND d.created_ms = o.created_ms AND d.state = 'dead'
        RETURNING d.id, d.endpoint_id, d.created_ms
    )
    SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(endpoint_id), '{}'),
           coalesce(array_agg(created_ms), '{}')
      INTO moved_id, moved_endpoint, moved_created
      FROM moved;
    PERFORM cliq_count_moves(
        moved_endpoint,
        moved_created,
        array_fill('dead'::text, ARRAY[cardinality(moved_id)]),
        array_fill('queued'::text, ARRAY[cardinality(moved_id)])
    );
    RETURN QUERY SELECT unnest(moved_id);
END;
$$;
