/// One versioned step of a schema. A migration is never edited once released; changes are new
/// migrations with the next version. Each backend applies the ones it has not recorded, in order,
/// in one transaction under a lock.
struct SchemaMigration {
    var version: Int
    var statements: [String]
}

/// The PostgreSQL schema, as an ordered list of migrations.
enum PostgresSchema {
    static let migrations: [SchemaMigration] = [
        SchemaMigration(
            version: 1,
            statements: [
                """
                CREATE TABLE shard_leases (
                    shard integer PRIMARY KEY,
                    epoch bigint NOT NULL CHECK (epoch > 0),
                    owner text NOT NULL,
                    acquired_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                """
                CREATE TABLE auction_events (
                    auction_id text NOT NULL,
                    seq bigint NOT NULL CHECK (seq > 0),
                    shard integer NOT NULL,
                    epoch bigint NOT NULL,
                    kind text NOT NULL,
                    payload jsonb NOT NULL,
                    recorded_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (auction_id, seq)
                )
                """,
                """
                CREATE TABLE auction_snapshots (
                    auction_id text PRIMARY KEY,
                    seq bigint NOT NULL CHECK (seq > 0),
                    state jsonb NOT NULL,
                    taken_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                // One round trip per batch: fence, check seqs, insert events and snapshots, all in the
                // statement's own transaction. Share locks on the lease rows make a concurrent
                // acquire (which updates them) wait for in-flight appends, and every later append
                // see the new epoch. Expected refusals are returned as rows, not raised.
                """
                CREATE FUNCTION artpay_append(
                    p_shards integer[], p_epochs bigint[],
                    p_auctions text[], p_expected bigint[],
                    e_auction text[], e_seq bigint[], e_shard integer[], e_epoch bigint[], e_kind text[],
                    e_payload text[],
                    s_auction text[], s_seq bigint[], s_state text[]
                ) RETURNS TABLE (o_outcome text, o_shard integer, o_auction text, o_expected bigint, o_actual bigint)
                LANGUAGE plpgsql AS $$
                BEGIN
                    RETURN QUERY
                        WITH locked AS (
                            SELECT l.shard AS s, l.epoch AS e FROM shard_leases l
                            WHERE l.shard = ANY(p_shards) FOR SHARE
                        )
                        SELECT 'fenced'::text, w.s, NULL::text, w.e, locked.e
                        FROM unnest(p_shards, p_epochs) AS w(s, e) LEFT JOIN locked ON locked.s = w.s
                        WHERE locked.e IS DISTINCT FROM w.e;
                    IF FOUND THEN RETURN; END IF;

                    RETURN QUERY
                        SELECT 'seq_conflict'::text, NULL::integer, x.a, x.expected, h.last
                        FROM unnest(p_auctions, p_expected) AS x(a, expected)
                        CROSS JOIN LATERAL (
                            SELECT coalesce(max(ev.seq), 0) AS last FROM auction_events ev WHERE ev.auction_id = x.a
                        ) h
                        WHERE h.last <> x.expected;
                    IF FOUND THEN RETURN; END IF;

                    INSERT INTO auction_events (auction_id, seq, shard, epoch, kind, payload)
                    SELECT t.a, t.s, t.sh, t.ep, t.k, t.p::jsonb
                    FROM unnest(e_auction, e_seq, e_shard, e_epoch, e_kind, e_payload) AS t(a, s, sh, ep, k, p);

                    INSERT INTO auction_snapshots AS cur (auction_id, seq, state)
                    SELECT t.a, t.s, t.st::jsonb FROM unnest(s_auction, s_seq, s_state) AS t(a, s, st)
                    ON CONFLICT (auction_id) DO UPDATE
                        SET seq = excluded.seq, state = excluded.state, taken_at = now()
                        WHERE cur.seq < excluded.seq;

                    RETURN QUERY SELECT 'ok'::text, NULL::integer, NULL::text, NULL::bigint, NULL::bigint;
                END
                $$
                """,
            ]
        ),
        SchemaMigration(
            version: 2,
            statements: [
                """
                CREATE TABLE users (
                    id text PRIMARY KEY,
                    username text NOT NULL UNIQUE,
                    password_hash text NOT NULL,
                    roles text NOT NULL,
                    created_at bigint NOT NULL
                )
                """
            ]
        ),
        // Log heads: one row per auction with the seq its log ends at and the commit position of
        // the append that moved it (transaction id, then a sequence number), so readers catch up on
        // what changed instead of scanning every log. `artpay_append` keeps it in the same statement.
        SchemaMigration(
            version: 3,
            statements: [
                "CREATE SEQUENCE auction_head_changes",
                """
                CREATE TABLE auction_heads (
                    auction_id text PRIMARY KEY,
                    last_seq bigint NOT NULL,
                    changed_tx xid8 NOT NULL,
                    change bigint NOT NULL
                )
                """,
                "CREATE INDEX auction_heads_by_change ON auction_heads (changed_tx, change)",
                """
                INSERT INTO auction_heads (auction_id, last_seq, changed_tx, change)
                SELECT auction_id, max(seq), '1'::xid8, nextval('auction_head_changes')
                FROM auction_events GROUP BY auction_id
                """,
                """
                CREATE OR REPLACE FUNCTION artpay_append(
                    p_shards integer[], p_epochs bigint[],
                    p_auctions text[], p_expected bigint[],
                    e_auction text[], e_seq bigint[], e_shard integer[], e_epoch bigint[], e_kind text[],
                    e_payload text[],
                    s_auction text[], s_seq bigint[], s_state text[]
                ) RETURNS TABLE (o_outcome text, o_shard integer, o_auction text, o_expected bigint, o_actual bigint)
                LANGUAGE plpgsql AS $$
                BEGIN
                    RETURN QUERY
                        WITH locked AS (
                            SELECT l.shard AS s, l.epoch AS e FROM shard_leases l
                            WHERE l.shard = ANY(p_shards) FOR SHARE
                        )
                        SELECT 'fenced'::text, w.s, NULL::text, w.e, locked.e
                        FROM unnest(p_shards, p_epochs) AS w(s, e) LEFT JOIN locked ON locked.s = w.s
                        WHERE locked.e IS DISTINCT FROM w.e;
                    IF FOUND THEN RETURN; END IF;

                    RETURN QUERY
                        SELECT 'seq_conflict'::text, NULL::integer, x.a, x.expected, h.last
                        FROM unnest(p_auctions, p_expected) AS x(a, expected)
                        CROSS JOIN LATERAL (
                            SELECT coalesce(max(ev.seq), 0) AS last FROM auction_events ev WHERE ev.auction_id = x.a
                        ) h
                        WHERE h.last <> x.expected;
                    IF FOUND THEN RETURN; END IF;

                    INSERT INTO auction_events (auction_id, seq, shard, epoch, kind, payload)
                    SELECT t.a, t.s, t.sh, t.ep, t.k, t.p::jsonb
                    FROM unnest(e_auction, e_seq, e_shard, e_epoch, e_kind, e_payload) AS t(a, s, sh, ep, k, p);

                    INSERT INTO auction_heads AS cur (auction_id, last_seq, changed_tx, change)
                    SELECT t.a, max(t.s), pg_current_xact_id(), nextval('auction_head_changes')
                    FROM unnest(e_auction, e_seq) AS t(a, s) GROUP BY t.a
                    ON CONFLICT (auction_id) DO UPDATE
                        SET last_seq = excluded.last_seq, changed_tx = excluded.changed_tx, change = excluded.change;

                    INSERT INTO auction_snapshots AS cur (auction_id, seq, state)
                    SELECT t.a, t.s, t.st::jsonb FROM unnest(s_auction, s_seq, s_state) AS t(a, s, st)
                    ON CONFLICT (auction_id) DO UPDATE
                        SET seq = excluded.seq, state = excluded.state, taken_at = now()
                        WHERE cur.seq < excluded.seq;

                    RETURN QUERY SELECT 'ok'::text, NULL::integer, NULL::text, NULL::bigint, NULL::bigint;
                END
                $$
                """,
            ]
        ),
        // The append's statements take arrays whose sizes vary per call: PL/pgSQL kept planning them
        // afresh (custom plans), a fifth of the server's CPU under load. Their generic plans use the
        // same indexes.
        SchemaMigration(
            version: 4,
            statements: [
                """
                ALTER FUNCTION artpay_append(
                    integer[], bigint[], text[], bigint[], text[], bigint[], integer[], bigint[], text[], text[],
                    text[], bigint[], text[]
                ) SET plan_cache_mode = force_generic_plan
                """
            ]
        ),
        // Revocation and login throttling: a user's token version (tokens carry it; raising it
        // revokes every token issued before), and failed logins per username — for names that do
        // not exist too, so a lock says nothing about who has an account.
        SchemaMigration(
            version: 5,
            statements: [
                "ALTER TABLE users ADD COLUMN token_version bigint NOT NULL DEFAULT 0",
                """
                CREATE TABLE login_failures (
                    username text PRIMARY KEY,
                    failures integer NOT NULL,
                    locked_until bigint NOT NULL
                )
                """,
            ]
        ),
        // Payments: the methods a user keeps on file (provider tokens, never card numbers), and
        // blocks from bidding after a default, one per (user, lot), lifted by an admin.
        SchemaMigration(
            version: 6,
            statements: [
                """
                CREATE TABLE payment_methods (
                    user_id text NOT NULL REFERENCES users (id),
                    method_id text NOT NULL,
                    brand text NOT NULL,
                    last4 text NOT NULL,
                    saved_at bigint NOT NULL,
                    PRIMARY KEY (user_id, method_id)
                )
                """,
                """
                CREATE TABLE bidding_blocks (
                    user_id text NOT NULL REFERENCES users (id),
                    auction_id text NOT NULL,
                    blocked_at bigint NOT NULL,
                    lifted_at bigint,
                    lifted_by text,
                    PRIMARY KEY (user_id, auction_id)
                )
                """,
                "CREATE INDEX bidding_blocks_in_force ON bidding_blocks (user_id) WHERE lifted_at IS NULL",
            ]
        ),
        // Paddle numbers: bidders are shown to each other by a number per sale, never by account.
        SchemaMigration(
            version: 7,
            statements: [
                "CREATE TABLE paddle_scopes (scope text PRIMARY KEY, last_paddle integer NOT NULL)",
                """
                CREATE TABLE paddles (
                    scope text NOT NULL,
                    user_id text NOT NULL,
                    paddle integer NOT NULL,
                    PRIMARY KEY (scope, user_id),
                    UNIQUE (scope, paddle)
                )
                """,
                "CREATE INDEX paddles_by_user ON paddles (user_id)",
            ]
        ),
        // The commit-ordered feed: every event gets the id of the transaction that appended it and
        // a position from a sequence. Positions become visible out of commit order (a transaction
        // that took a lower one may commit later), so a reader takes only events of transactions
        // older than the oldest one still running (`pg_snapshot_xmin`), in (transaction, position)
        // order: nothing can commit below that line any more, so following it skips nothing.
        // Events written before this version get transaction 1 and positions in time order; any
        // other insert gets both by default.
        SchemaMigration(
            version: 8,
            statements: [
                "CREATE SEQUENCE auction_event_positions",
                "ALTER TABLE auction_events ADD COLUMN committed_tx xid8, ADD COLUMN position bigint",
                """
                UPDATE auction_events ev SET committed_tx = '1'::xid8, position = ordered.n
                FROM (
                    SELECT auction_id, seq, row_number() OVER (ORDER BY recorded_at, auction_id, seq) AS n
                    FROM auction_events
                ) ordered
                WHERE ev.auction_id = ordered.auction_id AND ev.seq = ordered.seq
                """,
                "SELECT setval('auction_event_positions', coalesce(max(position), 0) + 1, false) FROM auction_events",
                """
                ALTER TABLE auction_events ALTER COLUMN committed_tx SET NOT NULL,
                    ALTER COLUMN committed_tx SET DEFAULT pg_current_xact_id(),
                    ALTER COLUMN position SET NOT NULL,
                    ALTER COLUMN position SET DEFAULT nextval('auction_event_positions')
                """,
                "CREATE INDEX auction_events_in_commit_order ON auction_events (committed_tx, position)",
                """
                CREATE OR REPLACE FUNCTION artpay_append(
                    p_shards integer[], p_epochs bigint[],
                    p_auctions text[], p_expected bigint[],
                    e_auction text[], e_seq bigint[], e_shard integer[], e_epoch bigint[], e_kind text[],
                    e_payload text[],
                    s_auction text[], s_seq bigint[], s_state text[]
                ) RETURNS TABLE (o_outcome text, o_shard integer, o_auction text, o_expected bigint, o_actual bigint)
                LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
                BEGIN
                    RETURN QUERY
                        WITH locked AS (
                            SELECT l.shard AS s, l.epoch AS e FROM shard_leases l
                            WHERE l.shard = ANY(p_shards) FOR SHARE
                        )
                        SELECT 'fenced'::text, w.s, NULL::text, w.e, locked.e
                        FROM unnest(p_shards, p_epochs) AS w(s, e) LEFT JOIN locked ON locked.s = w.s
                        WHERE locked.e IS DISTINCT FROM w.e;
                    IF FOUND THEN RETURN; END IF;

                    RETURN QUERY
                        SELECT 'seq_conflict'::text, NULL::integer, x.a, x.expected, h.last
                        FROM unnest(p_auctions, p_expected) AS x(a, expected)
                        CROSS JOIN LATERAL (
                            SELECT coalesce(max(ev.seq), 0) AS last FROM auction_events ev WHERE ev.auction_id = x.a
                        ) h
                        WHERE h.last <> x.expected;
                    IF FOUND THEN RETURN; END IF;

                    INSERT INTO auction_events (auction_id, seq, shard, epoch, kind, payload, committed_tx, position)
                    SELECT t.a, t.s, t.sh, t.ep, t.k, t.p::jsonb, pg_current_xact_id(), nextval('auction_event_positions')
                    FROM unnest(e_auction, e_seq, e_shard, e_epoch, e_kind, e_payload) WITH ORDINALITY
                        AS t(a, s, sh, ep, k, p, o)
                    ORDER BY t.o;

                    INSERT INTO auction_heads AS cur (auction_id, last_seq, changed_tx, change)
                    SELECT t.a, max(t.s), pg_current_xact_id(), nextval('auction_head_changes')
                    FROM unnest(e_auction, e_seq) AS t(a, s) GROUP BY t.a
                    ON CONFLICT (auction_id) DO UPDATE
                        SET last_seq = excluded.last_seq, changed_tx = excluded.changed_tx, change = excluded.change;

                    INSERT INTO auction_snapshots AS cur (auction_id, seq, state)
                    SELECT t.a, t.s, t.st::jsonb FROM unnest(s_auction, s_seq, s_state) AS t(a, s, st)
                    ON CONFLICT (auction_id) DO UPDATE
                        SET seq = excluded.seq, state = excluded.state, taken_at = now()
                        WHERE cur.seq < excluded.seq;

                    RETURN QUERY SELECT 'ok'::text, NULL::integer, NULL::text, NULL::bigint, NULL::bigint;
                END
                $$
                """,
            ]
        ),
            // Webhooks: endpoints an admin registered, each following the feed from its own cursor
        // (its text form), and the log of delivery attempts.
        SchemaMigration(
            version: 9,
            statements: [
                """
                CREATE TABLE webhook_endpoints (
                    id text PRIMARY KEY,
                    url text NOT NULL,
                    types text NOT NULL,
                    secret text NOT NULL,
                    created_at bigint NOT NULL,
                    cursor text NOT NULL,
                    generation bigint NOT NULL DEFAULT 0
                )
                """,
                """
                CREATE TABLE webhook_deliveries (
                    id bigserial PRIMARY KEY,
                    endpoint_id text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
                    cursor text NOT NULL,
                    auction_id text NOT NULL,
                    seq bigint NOT NULL,
                    type text NOT NULL,
                    attempt integer NOT NULL,
                    outcome text NOT NULL,
                    status integer,
                    error text,
                    attempted_at bigint NOT NULL,
                    node text NOT NULL
                )
                """,
                "CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id)",
                "CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (attempted_at)",
            ]
        ),
            // The archive: each finished lot's record as one document, with the columns analytics
        // filter and group by.
        SchemaMigration(
            version: 10,
            statements: [
                """
                CREATE TABLE auction_archive (
                    auction_id text PRIMARY KEY,
                    seq bigint NOT NULL,
                    sale_id text,
                    seller_id text NOT NULL,
                    currency text NOT NULL,
                    result text NOT NULL,
                    starting_price bigint NOT NULL,
                    reserve_price bigint,
                    hammer bigint,
                    bids integer NOT NULL,
                    bidders integer NOT NULL,
                    extensions integer NOT NULL,
                    ended_at bigint NOT NULL,
                    archived_at bigint NOT NULL,
                    document jsonb NOT NULL
                )
                """,
                "CREATE INDEX auction_archive_by_end ON auction_archive (ended_at, auction_id)",
                "CREATE INDEX auction_archive_by_seller ON auction_archive (seller_id, ended_at)",
                "CREATE INDEX auction_archive_by_sale ON auction_archive (sale_id, ended_at)",
            ]
        ),
        // Compaction of archived lots' live logs: how far each was compacted, and the feed's horizon
        // (the last feed position of any compacted event; a cursor before it is refused).
        // `artpay_compact` does one lot in one transaction: the horizon row is locked first, so a
        // webhook replay (which reads it FOR SHARE) and a compaction never cross.
        SchemaMigration(
            version: 11,
            statements: [
                "ALTER TABLE auction_archive ADD COLUMN compacted_seq bigint",
                "CREATE INDEX auction_archive_by_archiving ON auction_archive (archived_at)",
                """
                CREATE TABLE feed_horizon (
                    id integer PRIMARY KEY CHECK (id = 1),
                    tx xid8 NOT NULL,
                    position bigint NOT NULL
                )
                """,
                "INSERT INTO feed_horizon (id, tx, position) VALUES (1, '0'::xid8, 0)",
                """
                CREATE FUNCTION artpay_compact(p_auction text, p_seq bigint, p_state text)
                RETURNS TABLE (o_outcome text, o_removed bigint)
                LANGUAGE plpgsql AS $$
                DECLARE
                    v_archived bigint;
                    v_last bigint;
                    v_tx xid8;
                    v_position bigint;
                    v_removed bigint;
                BEGIN
                    PERFORM 1 FROM feed_horizon WHERE id = 1 FOR UPDATE;
                    SELECT a.seq INTO v_archived FROM auction_archive a WHERE a.auction_id = p_auction FOR UPDATE;
                    SELECT max(ev.seq) INTO v_last FROM auction_events ev WHERE ev.auction_id = p_auction;
                    IF v_archived IS DISTINCT FROM p_seq OR v_last IS DISTINCT FROM p_seq THEN
                        RETURN QUERY SELECT 'archive_behind'::text, 0::bigint;
                        RETURN;
                    END IF;
                    SELECT ev.committed_tx, ev.position INTO v_tx, v_position FROM auction_events ev
                    WHERE ev.auction_id = p_auction AND ev.seq < p_seq
                    ORDER BY ev.committed_tx DESC, ev.position DESC LIMIT 1;
                    IF v_tx IS NOT NULL AND EXISTS (
                        SELECT 1 FROM webhook_endpoints w
                        WHERE (split_part(w.cursor, '.', 1)::xid8, split_part(w.cursor, '.', 2)::bigint)
                            < (v_tx, v_position)
                    ) THEN
                        RETURN QUERY SELECT 'webhooks_behind'::text, 0::bigint;
                        RETURN;
                    END IF;
                    INSERT INTO auction_snapshots AS cur (auction_id, seq, state)
                    VALUES (p_auction, p_seq, p_state::jsonb)
                    ON CONFLICT (auction_id) DO UPDATE SET seq = excluded.seq, state = excluded.state, taken_at = now()
                        WHERE cur.seq <= excluded.seq;
                    IF v_tx IS NOT NULL THEN
                        UPDATE feed_horizon SET tx = v_tx, position = v_position
                        WHERE id = 1 AND (tx, position) < (v_tx, v_position);
                    END IF;
                    DELETE FROM auction_events ev WHERE ev.auction_id = p_auction AND ev.seq < p_seq;
                    GET DIAGNOSTICS v_removed = ROW_COUNT;
                    UPDATE auction_archive SET compacted_seq = p_seq WHERE auction_id = p_auction;
                    RETURN QUERY SELECT 'compacted'::text, v_removed;
                END
                $$
                """,
            ]
        ),
    ]
}
