public import AuctionCore
public import Logging
public import PostgresNIO

/// The production event store: PostgreSQL through postgres-nio's connection pool.
///
/// The caller owns the `PostgresClient` and must keep its `run()` going (it is a ServiceLifecycle
/// service). Each append is one statement and one round trip (see `PostgresSchema`), so the pool's
/// connections bound how many batches are in flight at once.
public struct PostgresEventStore: EventStore {
    let client: PostgresClient
    let logger: Logger
    let fencing: Fencing
    /// How long one call may take before it fails with `unavailable` (an unknown outcome for an
    /// append): a restarted or unreachable server, or a connection that went silent, never holds
    /// a caller — or the node's few append slots — for longer.
    let timeout: Duration
    /// Keeps calls off connections that closed under them (see ``PostgresAnswerGuard``).
    let answers = PostgresAnswerGuard()

    public init(
        client: PostgresClient, fencing: Fencing = .enforced, timeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "artpay.storage.postgres")
    ) {
        self.client = client
        self.fencing = fencing
        self.timeout = timeout
        self.logger = logger
    }

    public func migrate() async throws(StorageError) {
        // Migrations may rewrite large tables: they get minutes, not the per-call limit.
        try await guarded(limit: .seconds(600)) {
            try await client.withTransaction(logger: logger) { connection in
                // Nodes starting together take turns; the lock ends with the transaction.
                try await connection.query("SELECT pg_advisory_xact_lock(7274297)", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS artpay_schema_migrations (
                        version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                var applied = Set<Int>()
                for try await version in try await connection.query(
                    "SELECT version FROM artpay_schema_migrations", logger: logger
                ).decode(Int32.self) {
                    applied.insert(Int(version))
                }
                for migration in PostgresSchema.migrations where !applied.contains(migration.version) {
                    for statement in migration.statements {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO artpay_schema_migrations (version) VALUES (\(Int32(migration.version)))",
                        logger: logger)
                }
            }
        }
    }

    public func acquire(shard: ShardID, node: NodeID) async throws(StorageError) -> ShardLease {
        let epoch: Int64 = try await guardedQuery { connection in
            let rows = try await connection.query(
                """
                INSERT INTO shard_leases (shard, epoch, owner) VALUES (\(shard.rawValue), 1, \(node.rawValue))
                ON CONFLICT (shard) DO UPDATE
                    SET epoch = shard_leases.epoch + 1, owner = excluded.owner, acquired_at = now()
                RETURNING epoch
                """, logger: logger)
            for try await epoch in rows.decode(Int64.self) { return epoch }
            throw StorageError.unavailable("acquire returned no row")
        }
        return ShardLease(shard: shard, epoch: Epoch(epoch), owner: node)
    }

    public func lease(of shard: ShardID) async throws(StorageError) -> ShardLease? {
        let row: (Int64, String)? = try await guardedQuery { connection in
            let rows = try await connection.query(
                "SELECT epoch, owner FROM shard_leases WHERE shard = \(shard.rawValue)", logger: logger)
            for try await row in rows.decode((Int64, String).self) { return row }
            return nil
        }
        guard let (epoch, owner) = row else { return nil }
        guard let node = NodeID(rawValue: owner) else {
            throw .unavailable("lease of \(shard) names an invalid node id")
        }
        return ShardLease(shard: shard, epoch: Epoch(epoch), owner: node)
    }

    public func append(_ batch: AppendBatch) async throws(StorageError) {
        try batch.validate()
        guard !batch.entries.isEmpty else { return }
        var shardEpochs: [ShardID: Epoch] = [:]
        for entry in batch.entries {
            if let other = shardEpochs[entry.shard], other != entry.epoch {
                throw .invalidBatch("two epochs for \(entry.shard) in one batch")
            }
            shardEpochs[entry.shard] = entry.epoch
        }
        // No shards to check is no fencing (debug only, see `Fencing`).
        let shards = fencing == .enforced ? shardEpochs.keys.sorted() : []
        var eAuction: [String] = []
        var eSeq: [Int64] = []
        var eShard: [Int32] = []
        var eEpoch: [Int64] = []
        var eKind: [String] = []
        var ePayload: [String] = []
        var sAuction: [String] = []
        var sSeq: [Int64] = []
        var sState: [String] = []
        for entry in batch.entries {
            for (offset, event) in entry.events.enumerated() {
                let (kind, payload) = EventCodec.encode(event)
                eAuction.append(entry.auction.rawValue)
                eSeq.append(entry.firstSeq + Int64(offset))
                eShard.append(entry.shard.rawValue)
                eEpoch.append(entry.epoch.rawValue)
                eKind.append(kind)
                ePayload.append(payload)
            }
            if let snapshot = entry.snapshot {
                sAuction.append(entry.auction.rawValue)
                sSeq.append(snapshot.seq)
                sState.append(EventCodec.encodeSnapshot(snapshot))
            }
        }
        let query: PostgresQuery = """
            SELECT o_outcome, o_shard, o_auction, o_expected, o_actual FROM artpay_append(
                \(shards.map(\.rawValue)), \(shards.map { shardEpochs[$0]!.rawValue }),
                \(batch.entries.map(\.auction.rawValue)), \(batch.entries.map { $0.firstSeq - 1 }),
                \(eAuction), \(eSeq), \(eShard), \(eEpoch), \(eKind), \(ePayload),
                \(sAuction), \(sSeq), \(sState))
            """
        typealias Outcome = (String, Int32?, String?, Int64?, Int64?)
        let race = StorageError.seqConflict(
            auction: batch.entries[0].auction, expectedLastSeq: batch.entries[0].firstSeq - 1, actualLastSeq: nil)
        let outcomes: [Outcome] = try await guardedQuery(uniqueViolation: race) { connection in
            var outcomes: [Outcome] = []
            for try await row in try await connection.query(query, logger: logger).decode(Outcome.self) {
                outcomes.append(row)
            }
            return outcomes
        }
        var fenced: [StorageError.FencedShard] = []
        for (outcome, shard, auction, expected, actual) in outcomes {
            switch outcome {
            case "ok":
                return
            case "fenced":
                let shard = ShardID(shard ?? -1)
                fenced.append(
                    .init(shard: shard, writerEpoch: Epoch(expected ?? 0), currentEpoch: actual.map(Epoch.init)))
            case "seq_conflict":
                let id = auction.flatMap(AuctionID.init(rawValue:)) ?? batch.entries[0].auction
                throw .seqConflict(auction: id, expectedLastSeq: expected ?? -1, actualLastSeq: actual)
            default:
                throw .unavailable("unexpected append outcome '\(outcome)'")
            }
        }
        if !fenced.isEmpty { throw .fenced(fenced) }
        throw .unavailable("append returned no outcome")
    }

    public func load(_ auction: AuctionID) async throws(StorageError) -> StoredAuction {
        let snapshotRow: (Int64, String)? = try await guardedQuery { connection in
            let rows = try await connection.query(
                "SELECT seq, state::text FROM auction_snapshots WHERE auction_id = \(auction.rawValue)",
                logger: logger)
            for try await row in rows.decode((Int64, String).self) { return row }
            return nil
        }
        var snapshot: Auction?
        if let (seq, state) = snapshotRow {
            snapshot = try EventCodec.decodeSnapshot(state, auction: auction, seq: seq)
        }
        var tail: [StoredEvent] = []
        var after = snapshot?.seq ?? 0
        while true {
            let page = try await events(of: auction, after: after, limit: 1_000)
            tail += page
            guard page.count == 1_000, let last = page.last else { break }
            after = last.seq
        }
        return StoredAuction(snapshot: snapshot, tail: tail)
    }

    public func events(
        of auction: AuctionID, after afterSeq: Int64, limit: Int
    ) async throws(StorageError) -> [StoredEvent] {
        let rows: [(Int64, Int64, String, String)] = try await guardedQuery { connection in
            var rows: [(Int64, Int64, String, String)] = []
            let sequence = try await connection.query(
                """
                SELECT seq, epoch, kind, payload::text FROM auction_events
                WHERE auction_id = \(auction.rawValue) AND seq > \(afterSeq) ORDER BY seq LIMIT \(Int64(limit))
                """, logger: logger)
            for try await row in sequence.decode((Int64, Int64, String, String).self) { rows.append(row) }
            return rows
        }
        if let first = rows.first?.0, first > afterSeq + 1, first == (try await compactedSeq(of: auction)) {
            throw .compacted(auction: auction, keptFrom: first)
        }
        return try rows.storedEvents(of: auction, after: afterSeq)
    }

    public func logs(of auctions: [AuctionID], through maxSeq: Int64) async throws(StorageError) -> [StoredEvent] {
        guard !auctions.isEmpty, maxSeq > 0 else { return [] }
        let names = auctions.map(\.rawValue)
        let rows: [(String, Int64, Int64, String, String)] = try await guardedQuery { connection in
            var rows: [(String, Int64, Int64, String, String)] = []
            let sequence = try await connection.query(
                """
                SELECT auction_id, seq, epoch, kind, payload::text FROM auction_events
                WHERE auction_id = ANY(\(names)) AND seq <= \(maxSeq) ORDER BY auction_id, seq
                """, logger: logger)
            for try await row in sequence.decode((String, Int64, Int64, String, String).self) { rows.append(row) }
            return rows
        }
        var events: [StoredEvent] = []
        events.reserveCapacity(rows.count)
        for (name, seq, epoch, kind, payload) in rows {
            guard let auction = AuctionID(rawValue: name) else {
                throw .unavailable("malformed auction id in the log: \(name)")
            }
            let event = try EventCodec.decode(kind: kind, payload: payload, auction: auction, seq: seq)
            events.append(StoredEvent(auction: auction, seq: seq, epoch: Epoch(epoch), event: event))
        }
        return events
    }

    /// The seq `auction`'s log was last compacted to (its first event since), nil when never.
    private func compactedSeq(of auction: AuctionID) async throws(StorageError) -> Int64? {
        let logger = logger
        return try await guardedQuery { connection in
            let rows = try await connection.query(
                "SELECT compacted_seq FROM auction_archive WHERE auction_id = \(auction.rawValue)", logger: logger)
            for try await (seq) in rows.decode(Int64?.self) { return seq }
            return nil
        }
    }

    public func logHeads(after cursor: LogCursor, limit: Int) async throws(StorageError) -> LogHeadsPage {
        // Heads of transactions still running, and of everything after the oldest of them, wait:
        // a head becomes visible only once nothing that could commit before it is running. (The
        // text form of the id gets a name of its own: ORDER BY would otherwise sort by the text.)
        let rows: [(String, Int64, String, Int64)] = try await guardedQuery { connection in
            var found: [(String, Int64, String, Int64)] = []
            let result = try await connection.query(
                """
                SELECT auction_id, last_seq, changed_tx::text AS position_tx, change FROM auction_heads
                WHERE (changed_tx, change) > (\(String(cursor.transaction))::xid8, \(cursor.change))
                  AND changed_tx < pg_snapshot_xmin(pg_current_snapshot())
                ORDER BY changed_tx, change LIMIT \(Int64(limit))
                """, logger: logger)
            for try await row in result.decode((String, Int64, String, Int64).self) { found.append(row) }
            return found
        }
        var next = cursor
        var heads: [LogHead] = []
        heads.reserveCapacity(rows.count)
        for (auction, lastSeq, transaction, change) in rows {
            guard let id = AuctionID(rawValue: auction), let transaction = UInt64(transaction) else {
                throw .unavailable("malformed log head of \(auction)")
            }
            heads.append(LogHead(auction: id, lastSeq: lastSeq))
            next = LogCursor(transaction: transaction, change: change)
        }
        return LogHeadsPage(heads: heads, next: next)
    }

    public func feed(after cursor: FeedCursor, limit: Int) async throws(StorageError) -> FeedPage {
        // The horizon: events of transactions older than the oldest one still running. A
        // transaction below it has ended, so no event can appear there after this read.
        // One statement, one snapshot: the feed's horizon (moved by compaction) and the events after
        // the cursor are read together, so a compaction committing in between cannot leave a gap.
        typealias Row = (String, Int64, String?, Int64?, String?, Int64?, Int64?, String?, String?)
        let found: [Row] = try await guardedQuery { connection in
            var found: [Row] = []
            let result = try await connection.query(
                """
                SELECT h.tx::text, h.position, e.position_tx, e.position, e.auction_id, e.seq, e.epoch, e.kind,
                    e.payload
                FROM feed_horizon h LEFT JOIN LATERAL (
                    SELECT committed_tx::text AS position_tx, position, auction_id, seq, epoch, kind,
                        payload::text AS payload
                    FROM auction_events
                    WHERE (committed_tx, position) > (\(String(cursor.transaction))::xid8, \(cursor.position))
                      AND committed_tx < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY committed_tx, position LIMIT \(Int64(max(0, limit)))
                ) e ON true
                WHERE h.id = 1
                ORDER BY e.position_tx::xid8, e.position
                """, logger: logger)
            for try await row in result.decode(Row.self) { found.append(row) }
            return found
        }
        guard let first = found.first, let horizonTransaction = UInt64(first.0) else {
            throw .unavailable("the feed's horizon row is missing")
        }
        let horizon = FeedCursor(transaction: horizonTransaction, position: first.1)
        if cursor != .start, cursor < horizon { throw .feedCursorExpired(cursor, horizon: horizon) }
        var rows: [(String, Int64, String, Int64, Int64, String, String)] = []
        for row in found {
            guard let transaction = row.2, let position = row.3, let auction = row.4, let seq = row.5,
                let epoch = row.6, let kind = row.7, let payload = row.8
            else { continue }
            rows.append((transaction, position, auction, seq, epoch, kind, payload))
        }
        if rows.isEmpty, cursor != .start {
            // Nothing after it: fine for a cursor at the end, not for one past what was issued.
            let (lastPosition, nextTransaction): (Int64, String) = try await guardedQuery { connection in
                let result = try await connection.query(
                    """
                    SELECT (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                            FROM auction_event_positions),
                           pg_snapshot_xmax(pg_current_snapshot())::text
                    """, logger: logger)
                for try await row in result.decode((Int64, String).self) { return row }
                return (0, "0")
            }
            if cursor.position > lastPosition || cursor.transaction >= UInt64(nextTransaction) ?? .max {
                throw .unknownFeedCursor(cursor)
            }
        }
        var next = cursor
        var entries: [FeedEntry] = []
        entries.reserveCapacity(rows.count)
        for (transaction, position, auction, seq, epoch, kind, payload) in rows {
            guard let id = AuctionID(rawValue: auction), let transaction = UInt64(transaction) else {
                throw .unavailable("malformed feed row of \(auction)")
            }
            let event = try EventCodec.decode(kind: kind, payload: payload, auction: id, seq: seq)
            next = FeedCursor(transaction: transaction, position: position)
            entries.append(
                FeedEntry(cursor: next, event: StoredEvent(auction: id, seq: seq, epoch: Epoch(epoch), event: event)))
        }
        return FeedPage(entries: entries, next: next)
    }

    /// Runs `work` on a live pooled connection (``PostgresAnswerGuard``) within the call limit,
    /// mapping every failure to a `StorageError` that is safe to log.
    func guardedQuery<T: Sendable>(
        uniqueViolation: StorageError? = nil, call: String = #function,
        _ work: @escaping @Sendable (PostgresConnection) async throws -> T
    ) async throws(StorageError) -> T {
        let (client, answers) = (client, answers)
        return try await guarded(uniqueViolation: uniqueViolation, call: call) {
            try await answers.run(on: client, work)
        }
    }

    /// Runs database work within the call limit, mapping every failure to a `StorageError` that is
    /// safe to log.
    func guarded<T: Sendable>(
        uniqueViolation: StorageError? = nil, limit: Duration? = nil, call: String = #function,
        _ work: @escaping @Sendable () async throws -> T
    ) async throws(StorageError) -> T {
        do {
            return try await withDeadline(limit ?? timeout, work)
        } catch let error as StorageError {
            throw error
        } catch let error as DeadlineExceeded {
            logger.warning(
                "store call over its deadline", metadata: ["call": "\(call)", "limit": "\(limit ?? timeout)"])
            throw .unavailable("PostgreSQL gave \(error.description)")
        } catch is CancellationError {
            throw .unavailable("cancelled")
        } catch let error as ConnectionClosedWithoutAnswer {
            logger.warning("store call lost with its connection", metadata: ["call": "\(call)"])
            throw .unavailable("PostgreSQL: \(error.description)")
        } catch is PostgresAnswerGuard.ConnectionClosedBeforeSend {
            throw .unavailable("PostgreSQL: no open connection")
        } catch let error as PSQLError {
            if let server = error.serverInfo {
                let state = server[.sqlState] ?? "?????"
                if state == "23505", let uniqueViolation {
                    throw uniqueViolation
                }
                throw .unavailable("PostgreSQL error \(state): \(server[.message] ?? "")")
            }
            throw .unavailable("PostgreSQL connection: \(error.code)")
        } catch let error as PostgresDecodingError {
            throw .unavailable("unexpected row shape: \(error.code)")
        } catch {
            throw .unavailable("\(type(of: error))")
        }
    }
}

extension Array where Element == (Int64, Int64, String, String) {
    /// Decodes raw `(seq, epoch, kind, payload)` rows, checking they follow `afterSeq` without a gap.
    func storedEvents(of auction: AuctionID, after afterSeq: Int64) throws(StorageError) -> [StoredEvent] {
        var expected = afterSeq + 1
        var result: [StoredEvent] = []
        result.reserveCapacity(count)
        for (seq, epoch, kind, payload) in self {
            guard seq == expected else {
                throw .corruptRecord(auction: auction, seq: seq, reason: "gap: expected seq \(expected)")
            }
            let event = try EventCodec.decode(kind: kind, payload: payload, auction: auction, seq: seq)
            result.append(StoredEvent(auction: auction, seq: seq, epoch: Epoch(epoch), event: event))
            expected += 1
        }
        return result
    }
}

extension PostgresClient {
    /// Runs `body` with a new client on `configuration` that is running (its `run()` in a child
    /// task) for exactly as long as `body` does — for tools and tests; a server runs the client in
    /// its service group instead.
    public static func withRunning<T: Sendable>(
        _ configuration: Configuration, _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        let client = PostgresClient(configuration: configuration)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }
}

extension PostgresEventStore: UserStore {
    public func createUser(_ user: StoredUser) async throws(UserStoreError) {
        let (client, logger) = (client, logger)
        do {
            try await withDeadline(timeout) { [answers] in
                try await answers.run(on: client) { connection in
                    _ = try await connection.query(
                        """
                        INSERT INTO users (id, username, password_hash, roles, created_at)
                        VALUES (\(user.id.rawValue), \(user.username), \(user.passwordHash), \(user.roles.joined(separator: ",")),
                                \(user.createdAt.millisecondsSinceEpoch))
                        """, logger: logger)
                }
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            throw .usernameTaken
        } catch {
            throw .unavailable("PostgreSQL: \(String(describing: (error as? PSQLError)?.code ?? .connectionError))")
        }
    }

    public func user(named username: String) async throws(UserStoreError) -> StoredUser? {
        try await fetchUser(
            "SELECT \(unescaped: Self.userColumns) FROM users WHERE username = \(username)")
    }

    public func user(id: UserID) async throws(UserStoreError) -> StoredUser? {
        try await fetchUser(
            "SELECT \(unescaped: Self.userColumns) FROM users WHERE id = \(id.rawValue)")
    }

    private static let userColumns = """
        id, username, password_hash, roles, created_at, token_version,
        EXISTS (SELECT 1 FROM bidding_blocks b WHERE b.user_id = users.id AND b.lifted_at IS NULL)
        """

    public func revokeTokens(of id: UserID) async throws(UserStoreError) {
        let updated = try await userCall { connection, logger in
            var updated = 0
            let rows = try await connection.query(
                "UPDATE users SET token_version = token_version + 1 WHERE id = \(id.rawValue) RETURNING id",
                logger: logger)
            for try await _ in rows { updated += 1 }
            return updated
        }
        if updated == 0 { throw .unknownUser }
    }

    public func loginFailures(of username: String) async throws(UserStoreError) -> LoginFailures? {
        try await userCall { connection, logger in
            var found: LoginFailures?
            let rows = try await connection.query(
                "SELECT failures, locked_until FROM login_failures WHERE username = \(username)", logger: logger)
            for try await (failures, lockedUntil) in rows.decode((Int32, Int64).self) {
                found = LoginFailures(
                    failures: Int(failures), lockedUntil: Timestamp(millisecondsSinceEpoch: lockedUntil))
            }
            return found
        }
    }

    public func recordLoginFailure(of username: String, now: Timestamp, policy: LoginLockPolicy)
        async throws(UserStoreError) -> LoginFailures
    {
        try await userCall { connection, logger in
            var failures = 0
            var lockedUntil: Int64 = 0
            let counted = try await connection.query(
                """
                INSERT INTO login_failures AS f (username, failures, locked_until) VALUES (\(username), 1, 0)
                ON CONFLICT (username) DO UPDATE SET failures = f.failures + 1
                RETURNING failures, locked_until
                """, logger: logger)
            for try await (count, until) in counted.decode((Int32, Int64).self) {
                (failures, lockedUntil) = (Int(count), until)
            }
            let lock = policy.lock(afterFailures: failures)
            if lock > .zero {
                let until = now.advanced(by: lock).millisecondsSinceEpoch
                let locked = try await connection.query(
                    """
                    UPDATE login_failures SET locked_until = GREATEST(locked_until, \(until))
                    WHERE username = \(username) RETURNING locked_until
                    """, logger: logger)
                for try await until in locked.decode(Int64.self) { lockedUntil = until }
            }
            return LoginFailures(failures: failures, lockedUntil: Timestamp(millisecondsSinceEpoch: lockedUntil))
        }
    }

    public func clearLoginFailures(of username: String) async throws(UserStoreError) {
        try await userCall { connection, logger in
            _ = try await connection.query("DELETE FROM login_failures WHERE username = \(username)", logger: logger)
        }
    }

    /// One call on the user tables, within the store's deadline; any failure is `unavailable`.
    private func userCall<T: Sendable>(
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws(UserStoreError) -> T {
        let (client, logger) = (client, logger)
        do {
            return try await withDeadline(timeout) { [answers] in
                try await answers.run(on: client) { connection in try await body(connection, logger) }
            }
        } catch {
            throw .unavailable("PostgreSQL: \(String(describing: (error as? PSQLError)?.code ?? .connectionError))")
        }
    }

    public func setRoles(_ roles: [String], of id: UserID) async throws(UserStoreError) {
        let updated: Int
        let (client, logger) = (client, logger)
        do {
            updated = try await withDeadline(timeout) { [answers] in
                try await answers.run(on: client) { connection in
                    var updated = 0
                    let rows = try await connection.query(
                        """
                        UPDATE users SET roles = \(roles.joined(separator: ",")), token_version = token_version + 1
                        WHERE id = \(id.rawValue) RETURNING id
                        """, logger: logger)
                    for try await _ in rows { updated += 1 }
                    return updated
                }
            }
        } catch {
            throw .unavailable("PostgreSQL: \(String(describing: (error as? PSQLError)?.code ?? .connectionError))")
        }
        if updated == 0 { throw .unknownUser }
    }

    private func fetchUser(_ query: PostgresQuery) async throws(UserStoreError) -> StoredUser? {
        let found: (String, String, String, String, Int64, Int64, Bool)?
        let (client, logger) = (client, logger)
        do {
            found = try await withDeadline(timeout) { [answers] in
                try await answers.run(on: client) { connection in
                    var found: (String, String, String, String, Int64, Int64, Bool)?
                    for try await row in try await connection.query(query, logger: logger).decode(
                        (String, String, String, String, Int64, Int64, Bool).self)
                    {
                        found = row
                    }
                    return found
                }
            }
        } catch {
            throw .unavailable("PostgreSQL: \(String(describing: (error as? PSQLError)?.code ?? .connectionError))")
        }
        guard let (rawId, username, hash, roles, created, tokenVersion, blocked) = found else { return nil }
        guard let id = UserID(rawValue: rawId) else { throw .unavailable("malformed user row") }
        return StoredUser(
            id: id, username: username, passwordHash: hash, roles: roles.split(separator: ",").map(String.init),
            createdAt: Timestamp(millisecondsSinceEpoch: created), tokenVersion: tokenVersion,
            blockedFromBidding: blocked)
    }

    // MARK: - Payment methods and blocks

    public func savePaymentMethod(_ method: SavedPaymentMethod, for user: UserID) async throws(UserStoreError) {
        let saved = try await userCall { connection, logger in
            var saved = 0
            let rows = try await connection.query(
                """
                INSERT INTO payment_methods (user_id, method_id, brand, last4, saved_at)
                SELECT id, \(method.id.rawValue), \(method.brand), \(method.last4),
                       \(method.savedAt.millisecondsSinceEpoch)
                FROM users WHERE id = \(user.rawValue)
                ON CONFLICT (user_id, method_id) DO UPDATE
                    SET brand = excluded.brand, last4 = excluded.last4, saved_at = excluded.saved_at
                RETURNING method_id
                """, logger: logger)
            for try await _ in rows { saved += 1 }
            return saved
        }
        if saved == 0 { throw .unknownUser }
    }

    public func paymentMethods(of user: UserID) async throws(UserStoreError) -> [SavedPaymentMethod] {
        try await userCall { connection, logger in
            var methods: [SavedPaymentMethod] = []
            let rows = try await connection.query(
                """
                SELECT method_id, brand, last4, saved_at FROM payment_methods WHERE user_id = \(user.rawValue)
                ORDER BY saved_at DESC, method_id
                """, logger: logger)
            for try await (id, brand, last4, savedAt) in rows.decode((String, String, String, Int64).self) {
                guard let id = PaymentMethodID(rawValue: id) else { continue }
                methods.append(
                    SavedPaymentMethod(
                        id: id, brand: brand, last4: last4, savedAt: Timestamp(millisecondsSinceEpoch: savedAt)))
            }
            return methods
        }
    }

    public func removePaymentMethod(_ method: PaymentMethodID, of user: UserID) async throws(UserStoreError) -> Bool {
        try await userCall { connection, logger in
            var removed = false
            let rows = try await connection.query(
                """
                DELETE FROM payment_methods WHERE user_id = \(user.rawValue) AND method_id = \(method.rawValue)
                RETURNING method_id
                """, logger: logger)
            for try await _ in rows { removed = true }
            return removed
        }
    }

    public func blockFromBidding(_ user: UserID, defaultedOn auction: AuctionID, at: Timestamp)
        async throws(UserStoreError) -> Bool
    {
        try await userCall { connection, logger in
            var blocked = false
            let rows = try await connection.query(
                """
                INSERT INTO bidding_blocks (user_id, auction_id, blocked_at)
                SELECT id, \(auction.rawValue), \(at.millisecondsSinceEpoch) FROM users WHERE id = \(user.rawValue)
                ON CONFLICT (user_id, auction_id) DO NOTHING
                RETURNING user_id
                """, logger: logger)
            for try await _ in rows { blocked = true }
            return blocked
        }
    }

    public func paddle(of user: UserID, in scope: String) async throws(UserStoreError) -> Int {
        let paddle: Int? = try await userCall { connection, logger in
            func existing() async throws -> Int? {
                let rows = try await connection.query(
                    "SELECT paddle FROM paddles WHERE scope = \(scope) AND user_id = \(user.rawValue)", logger: logger)
                for try await paddle in rows.decode(Int.self) { return paddle }
                return nil
            }
            if let paddle = try await existing() { return paddle }
            // The scope's counter row serialises first paddles; a bidder given one by another node
            // meanwhile keeps theirs (the insert does nothing and the number is skipped).
            let rows = try await connection.query(
                """
                WITH next AS (
                    INSERT INTO paddle_scopes (scope, last_paddle) VALUES (\(scope), 101)
                    ON CONFLICT (scope) DO UPDATE SET last_paddle = paddle_scopes.last_paddle + 1
                    RETURNING last_paddle
                )
                INSERT INTO paddles (scope, user_id, paddle) SELECT \(scope), \(user.rawValue), last_paddle FROM next
                ON CONFLICT (scope, user_id) DO NOTHING
                RETURNING paddle
                """, logger: logger)
            for try await paddle in rows.decode(Int.self) { return paddle }
            return try await existing()
        }
        guard let paddle else { throw .unavailable("PostgreSQL: no paddle number was returned") }
        return paddle
    }

    public func paddles(in scopes: [String]) async throws(UserStoreError) -> [String: [UserID: Int]] {
        guard !scopes.isEmpty else { return [:] }
        return try await userCall { connection, logger in
            var paddles: [String: [UserID: Int]] = [:]
            let rows = try await connection.query(
                "SELECT scope, user_id, paddle FROM paddles WHERE scope = ANY(\(scopes))", logger: logger)
            for try await (scope, user, paddle) in rows.decode((String, String, Int).self) {
                if let id = UserID(rawValue: user) { paddles[scope, default: [:]][id] = paddle }
            }
            return paddles
        }
    }

    public func paddles(of user: UserID) async throws(UserStoreError) -> [String: Int] {
        try await userCall { connection, logger in
            var paddles: [String: Int] = [:]
            let rows = try await connection.query(
                "SELECT scope, paddle FROM paddles WHERE user_id = \(user.rawValue)", logger: logger)
            for try await (scope, paddle) in rows.decode((String, Int).self) { paddles[scope] = paddle }
            return paddles
        }
    }

    public func liftBiddingBlocks(of user: UserID, by admin: UserID, at: Timestamp) async throws(UserStoreError) -> Int
    {
        try await userCall { connection, logger in
            var lifted = 0
            let rows = try await connection.query(
                """
                UPDATE bidding_blocks SET lifted_at = \(at.millisecondsSinceEpoch), lifted_by = \(admin.rawValue)
                WHERE user_id = \(user.rawValue) AND lifted_at IS NULL
                RETURNING auction_id
                """, logger: logger)
            for try await _ in rows { lifted += 1 }
            return lifted
        }
    }

    public func biddingBlocks(of user: UserID) async throws(UserStoreError) -> [BiddingBlock] {
        try await userCall { connection, logger in
            var blocks: [BiddingBlock] = []
            let rows = try await connection.query(
                """
                SELECT auction_id, blocked_at, lifted_at, lifted_by FROM bidding_blocks
                WHERE user_id = \(user.rawValue) ORDER BY blocked_at DESC, auction_id
                """, logger: logger)
            for try await (auction, blockedAt, liftedAt, liftedBy) in rows.decode(
                (String, Int64, Int64?, String?).self)
            {
                guard let auction = AuctionID(rawValue: auction) else { continue }
                blocks.append(
                    BiddingBlock(
                        auction: auction, blockedAt: Timestamp(millisecondsSinceEpoch: blockedAt),
                        liftedAt: liftedAt.map(Timestamp.init(millisecondsSinceEpoch:)),
                        liftedBy: liftedBy.flatMap(UserID.init(rawValue:))))
            }
            return blocks
        }
    }
}
