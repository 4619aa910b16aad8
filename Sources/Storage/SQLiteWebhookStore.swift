public import AuctionCore
import SQLiteNIO

extension SQLiteEventStore: WebhookStore {
    private static let endpointColumns = "id, url, types, secret, created_at, cursor, generation"

    private static func endpoint(_ row: SQLiteRow) throws(StorageError) -> WebhookEndpoint {
        guard let id = row.column("id")?.string, let url = row.column("url")?.string,
            let types = row.column("types")?.string, let secret = row.column("secret")?.string,
            let createdAt = row.column("created_at")?.integer,
            let cursor = row.column("cursor")?.string.flatMap(FeedCursor.init),
            let generation = row.column("generation")?.integer
        else { throw .unavailable("malformed webhook endpoint row") }
        return WebhookEndpoint(
            id: id, url: url, types: types.split(separator: ",").map(String.init), secret: secret,
            createdAt: Timestamp(millisecondsSinceEpoch: Int64(createdAt)), cursor: cursor,
            generation: Int64(generation))
    }

    public func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws(StorageError) -> Bool {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                INSERT INTO webhook_endpoints (id, url, types, secret, created_at, cursor, generation)
                SELECT ?, ?, ?, ?, ?, ?, ? FROM feed_horizon WHERE id = 1 AND (? OR ? >= position)
                ON CONFLICT (id) DO NOTHING RETURNING id
                """,
                [
                    .text(endpoint.id), .text(endpoint.url), .text(endpoint.types.joined(separator: ",")),
                    .text(endpoint.secret), .integer(Int(endpoint.createdAt.millisecondsSinceEpoch)),
                    .text(endpoint.cursor.description), .integer(Int(endpoint.generation)),
                    .integer(endpoint.cursor == .start ? 1 : 0), .integer(Int(endpoint.cursor.position)),
                ])
        }
        if rows.isEmpty { try await refuseBeforeHorizon(endpoint.cursor) }
        return !rows.isEmpty
    }

    /// Throws `feedCursorExpired` when `cursor` is before the feed's horizon (and not `start`).
    private func refuseBeforeHorizon(_ cursor: FeedCursor) async throws(StorageError) {
        guard cursor != .start else { return }
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query("SELECT position FROM feed_horizon WHERE id = 1")
        }
        let horizon = FeedCursor(transaction: 0, position: Int64(rows.first?.column("position")?.integer ?? 0))
        if cursor < horizon { throw .feedCursorExpired(cursor, horizon: horizon) }
    }

    public func webhookEndpoints() async throws(StorageError) -> [WebhookEndpoint] {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                "SELECT \(Self.endpointColumns) FROM webhook_endpoints ORDER BY created_at, id")
        }
        var endpoints: [WebhookEndpoint] = []
        for row in rows { endpoints.append(try Self.endpoint(row)) }
        return endpoints
    }

    public func webhookEndpoint(_ id: String) async throws(StorageError) -> WebhookEndpoint? {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                "SELECT \(Self.endpointColumns) FROM webhook_endpoints WHERE id = ?", [.text(id)])
        }
        guard let row = rows.first else { return nil }
        return try Self.endpoint(row)
    }

    public func deleteWebhookEndpoint(_ id: String) async throws(StorageError) -> Bool {
        try await transaction { connection in
            _ = try await connection.query("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", [.text(id)])
            return try await !connection.query("DELETE FROM webhook_endpoints WHERE id = ? RETURNING id", [.text(id)])
                .isEmpty
        }
    }

    public func advanceWebhookCursor(
        of id: String, to cursor: FeedCursor, generation: Int64, shard: ShardID, epoch: Epoch
    ) async throws(StorageError) -> Bool {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                UPDATE webhook_endpoints SET cursor = ?
                WHERE id = ? AND generation = ?
                  AND EXISTS (SELECT 1 FROM shard_leases WHERE shard = ? AND epoch = ?)
                RETURNING id
                """,
                [
                    .text(cursor.description), .text(id), .integer(Int(generation)), .integer(Int(shard.rawValue)),
                    .integer(Int(epoch.rawValue)),
                ])
        }
        return !rows.isEmpty
    }

    public func rewindWebhookCursor(of id: String, to cursor: FeedCursor) async throws(StorageError)
        -> WebhookEndpoint?
    {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                UPDATE webhook_endpoints SET cursor = ?, generation = generation + 1
                WHERE id = ? AND (? OR ? >= (SELECT position FROM feed_horizon WHERE id = 1))
                RETURNING \(Self.endpointColumns)
                """,
                [
                    .text(cursor.description), .text(id), .integer(cursor == .start ? 1 : 0),
                    .integer(Int(cursor.position)),
                ])
        }
        guard let row = rows.first else {
            try await refuseBeforeHorizon(cursor)
            return nil
        }
        return try Self.endpoint(row)
    }

    public func recordWebhookDelivery(_ delivery: WebhookDelivery) async throws(StorageError) {
        let _: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                INSERT INTO webhook_deliveries
                    (endpoint_id, cursor, auction_id, seq, type, attempt, outcome, status, error, attempted_at, node)
                SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
                WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ?)
                """,
                [
                    .text(delivery.endpoint), .text(delivery.cursor.description), .text(delivery.auction.rawValue),
                    .integer(Int(delivery.seq)), .text(delivery.type), .integer(delivery.attempt),
                    .text(delivery.outcome.rawValue), delivery.status.map { .integer($0) } ?? .null,
                    delivery.error.map { .text($0) } ?? .null, .integer(Int(delivery.at.millisecondsSinceEpoch)),
                    .text(delivery.node), .text(delivery.endpoint),
                ])
        }
    }

    public func webhookDeliveries(of id: String, limit: Int) async throws(StorageError) -> [WebhookDelivery] {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT endpoint_id, cursor, auction_id, seq, type, attempt, outcome, status, error, attempted_at, node
                FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY id DESC LIMIT ?
                """, [.text(id), .integer(max(0, limit))])
        }
        return try rows.map { (row: SQLiteRow) throws(StorageError) -> WebhookDelivery in
            guard let endpoint = row.column("endpoint_id")?.string,
                let cursor = row.column("cursor")?.string.flatMap(FeedCursor.init),
                let auction = row.column("auction_id")?.string.flatMap(AuctionID.init(rawValue:)),
                let seq = row.column("seq")?.integer, let type = row.column("type")?.string,
                let attempt = row.column("attempt")?.integer,
                let outcome = row.column("outcome")?.string.flatMap(WebhookDelivery.Outcome.init(rawValue:)),
                let at = row.column("attempted_at")?.integer, let node = row.column("node")?.string
            else { throw .unavailable("malformed webhook delivery row") }
            return WebhookDelivery(
                endpoint: endpoint, cursor: cursor, auction: auction, seq: Int64(seq), type: type, attempt: attempt,
                outcome: outcome, status: row.column("status")?.integer, error: row.column("error")?.string,
                at: Timestamp(millisecondsSinceEpoch: Int64(at)), node: node)
        }
    }

    public func pruneWebhookDeliveries(before time: Timestamp) async throws(StorageError) {
        let _: [SQLiteRow] = try await exclusive {
            try await connection.query(
                "DELETE FROM webhook_deliveries WHERE attempted_at < ?", [.integer(Int(time.millisecondsSinceEpoch))])
        }
    }

    public func feedHead() async throws(StorageError) -> FeedCursor {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query("SELECT max(position) AS last FROM auction_events")
        }
        guard let last = rows.first?.column("last")?.integer else { return .start }
        return FeedCursor(transaction: 0, position: Int64(last))
    }
}
