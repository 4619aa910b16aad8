public import AuctionCore
import PostgresNIO

extension PostgresEventStore: WebhookStore {
    private typealias EndpointRow = (String, String, String, String, Int64, String, Int64)

    private static func endpoint(_ row: EndpointRow) throws(StorageError) -> WebhookEndpoint {
        let (id, url, types, secret, createdAt, cursor, generation) = row
        guard let cursor = FeedCursor(cursor) else { throw .unavailable("malformed cursor of webhook endpoint \(id)") }
        return WebhookEndpoint(
            id: id, url: url, types: types.split(separator: ",").map(String.init), secret: secret,
            createdAt: Timestamp(millisecondsSinceEpoch: createdAt), cursor: cursor, generation: generation)
    }

    private func endpoints(_ query: PostgresQuery) async throws(StorageError) -> [WebhookEndpoint] {
        let logger = logger
        let rows: [EndpointRow] = try await guardedQuery { connection in
            var rows: [EndpointRow] = []
            for try await row in try await connection.query(query, logger: logger).decode(EndpointRow.self) {
                rows.append(row)
            }
            return rows
        }
        var endpoints: [WebhookEndpoint] = []
        for row in rows { endpoints.append(try Self.endpoint(row)) }
        return endpoints
    }

    public func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws(StorageError) -> Bool {
        let logger = logger
        let cursor = endpoint.cursor
        let created: Bool = try await guardedQuery { connection in
            // The horizon row is read FOR SHARE: a compaction (which locks it FOR UPDATE, then reads
            // every endpoint's cursor) runs wholly before or after, never across.
            let rows = try await connection.query(
                """
                WITH h AS (SELECT tx, position FROM feed_horizon WHERE id = 1 FOR SHARE)
                INSERT INTO webhook_endpoints (id, url, types, secret, created_at, cursor, generation)
                SELECT \(endpoint.id), \(endpoint.url), \(endpoint.types.joined(separator: ",")), \(endpoint.secret),
                        \(endpoint.createdAt.millisecondsSinceEpoch), \(cursor.description), \(endpoint.generation)
                FROM h WHERE \(cursor == .start) OR (\(String(cursor.transaction))::xid8, \(cursor.position))
                    >= (h.tx, h.position)
                ON CONFLICT (id) DO NOTHING RETURNING id
                """, logger: logger)
            for try await _ in rows { return true }
            return false
        }
        if !created { try await refuseBeforeHorizon(cursor) }
        return created
    }

    /// Throws `feedCursorExpired` when `cursor` is before the feed's horizon (and not `start`).
    private func refuseBeforeHorizon(_ cursor: FeedCursor) async throws(StorageError) {
        guard cursor != .start else { return }
        let logger = logger
        let (transaction, position): (String, Int64) = try await guardedQuery { connection in
            let rows = try await connection.query(
                "SELECT tx::text, position FROM feed_horizon WHERE id = 1", logger: logger)
            for try await row in rows.decode((String, Int64).self) { return row }
            return ("0", 0)
        }
        let horizon = FeedCursor(transaction: UInt64(transaction) ?? 0, position: position)
        if cursor < horizon { throw .feedCursorExpired(cursor, horizon: horizon) }
    }

    public func webhookEndpoints() async throws(StorageError) -> [WebhookEndpoint] {
        try await endpoints(
            "SELECT id, url, types, secret, created_at, cursor, generation FROM webhook_endpoints ORDER BY created_at, id")
    }

    public func webhookEndpoint(_ id: String) async throws(StorageError) -> WebhookEndpoint? {
        try await endpoints(
            "SELECT id, url, types, secret, created_at, cursor, generation FROM webhook_endpoints WHERE id = \(id)"
        ).first
    }

    public func deleteWebhookEndpoint(_ id: String) async throws(StorageError) -> Bool {
        let logger = logger
        return try await guardedQuery { connection in
            let rows = try await connection.query(
                "DELETE FROM webhook_endpoints WHERE id = \(id) RETURNING id", logger: logger)
            for try await _ in rows { return true }
            return false
        }
    }

    public func advanceWebhookCursor(
        of id: String, to cursor: FeedCursor, generation: Int64, shard: ShardID, epoch: Epoch
    ) async throws(StorageError) -> Bool {
        let logger = logger
        // The lease row is share-locked, as an append does: a concurrent acquire waits for this
        // update, and once it has bumped the epoch no update under the old one matches.
        return try await guardedQuery { connection in
            let rows = try await connection.query(
                """
                UPDATE webhook_endpoints SET cursor = \(cursor.description)
                WHERE id = \(id) AND generation = \(generation)
                  AND EXISTS (
                      SELECT 1 FROM shard_leases WHERE shard = \(shard.rawValue) AND epoch = \(epoch.rawValue) FOR SHARE)
                RETURNING id
                """, logger: logger)
            for try await _ in rows { return true }
            return false
        }
    }

    public func rewindWebhookCursor(of id: String, to cursor: FeedCursor) async throws(StorageError)
        -> WebhookEndpoint?
    {
        // As in `createWebhookEndpoint`: checked against the horizon read FOR SHARE.
        let rewound = try await endpoints(
            """
            WITH h AS (SELECT tx, position FROM feed_horizon WHERE id = 1 FOR SHARE)
            UPDATE webhook_endpoints SET cursor = \(cursor.description), generation = generation + 1
            FROM h WHERE id = \(id) AND (\(cursor == .start) OR (\(String(cursor.transaction))::xid8, \(cursor.position))
                >= (h.tx, h.position))
            RETURNING id, url, types, secret, created_at, cursor, generation
            """
        ).first
        if rewound == nil { try await refuseBeforeHorizon(cursor) }
        return rewound
    }

    public func recordWebhookDelivery(_ delivery: WebhookDelivery) async throws(StorageError) {
        let logger = logger
        try await guardedQuery { connection in
            _ = try await connection.query(
                """
                INSERT INTO webhook_deliveries
                    (endpoint_id, cursor, auction_id, seq, type, attempt, outcome, status, error, attempted_at, node)
                SELECT \(delivery.endpoint), \(delivery.cursor.description), \(delivery.auction.rawValue), \(delivery.seq),
                       \(delivery.type), \(delivery.attempt), \(delivery.outcome.rawValue), \(delivery.status),
                       \(delivery.error), \(delivery.at.millisecondsSinceEpoch), \(delivery.node)
                WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = \(delivery.endpoint))
                """, logger: logger)
        }
    }

    public func webhookDeliveries(of id: String, limit: Int) async throws(StorageError) -> [WebhookDelivery] {
        typealias Row = (String, String, String, Int64, String, Int, String, Int?, String?, Int64, String)
        let logger = logger
        let rows: [Row] = try await guardedQuery { connection in
            var rows: [Row] = []
            let result = try await connection.query(
                """
                SELECT endpoint_id, cursor, auction_id, seq, type, attempt, outcome, status, error, attempted_at, node
                FROM webhook_deliveries WHERE endpoint_id = \(id) ORDER BY id DESC LIMIT \(max(0, limit))
                """, logger: logger)
            for try await row in result.decode(Row.self) { rows.append(row) }
            return rows
        }
        return try rows.map { (row: Row) throws(StorageError) -> WebhookDelivery in
            let (endpoint, cursor, auction, seq, type, attempt, outcome, status, error, at, node) = row
            guard let cursor = FeedCursor(cursor), let auction = AuctionID(rawValue: auction),
                let outcome = WebhookDelivery.Outcome(rawValue: outcome)
            else { throw .unavailable("malformed webhook delivery of \(endpoint)") }
            return WebhookDelivery(
                endpoint: endpoint, cursor: cursor, auction: auction, seq: seq, type: type, attempt: attempt,
                outcome: outcome, status: status, error: error, at: Timestamp(millisecondsSinceEpoch: at), node: node)
        }
    }

    public func pruneWebhookDeliveries(before time: Timestamp) async throws(StorageError) {
        let logger = logger
        try await guardedQuery { connection in
            _ = try await connection.query(
                "DELETE FROM webhook_deliveries WHERE attempted_at < \(time.millisecondsSinceEpoch)", logger: logger)
        }
    }

    public func feedHead() async throws(StorageError) -> FeedCursor {
        let logger = logger
        let row: (String, Int64)? = try await guardedQuery { connection in
            let result = try await connection.query(
                """
                SELECT committed_tx::text AS position_tx, position FROM auction_events
                WHERE committed_tx < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY committed_tx DESC, position DESC LIMIT 1
                """, logger: logger)
            for try await row in result.decode((String, Int64).self) { return row }
            return nil
        }
        guard let (transaction, position) = row else { return .start }
        guard let transaction = UInt64(transaction) else { throw .unavailable("malformed feed head") }
        return FeedCursor(transaction: transaction, position: position)
    }
}
