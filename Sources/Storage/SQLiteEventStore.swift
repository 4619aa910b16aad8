public import AuctionCore
public import Logging
import NIOCore
import NIOPosix
import SQLiteNIO

/// The embedded event store: one SQLite file, for the one-command local cluster and for tests.
///
/// Several processes may open the same file: WAL mode, a busy timeout and `BEGIN IMMEDIATE`
/// serialise writers, which is what fencing needs (an append checks the lease epoch inside the
/// same write transaction that inserts). `synchronous=FULL` makes a commit durable before an
/// append returns. Within one process, transactions on the single connection take turns.
public actor SQLiteEventStore: EventStore {
    let connection: SQLiteConnection
    /// This connection's own thread: a statement waiting out another process's write lock
    /// (busy timeout) blocks it, and must not starve other connections of threads.
    private let threadPool: NIOThreadPool
    private let fencing: Fencing
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    private init(connection: SQLiteConnection, threadPool: NIOThreadPool, fencing: Fencing) {
        self.connection = connection
        self.threadPool = threadPool
        self.fencing = fencing
    }

    /// Opens (creating when missing) the database file at `path`.
    public static func open(
        path: String, fencing: Fencing = .enforced, logger: Logger = Logger(label: "artpay.storage.sqlite")
    ) async throws(StorageError) -> SQLiteEventStore {
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger,
                on: MultiThreadedEventLoopGroup.singleton.any())
        } catch {
            try? await threadPool.shutdownGracefully()
            throw .unavailable("cannot open SQLite database at \(path): \(error)")
        }
        do {
            _ = try await connection.query("PRAGMA busy_timeout = 10000")
            _ = try await connection.query("PRAGMA journal_mode = WAL")
            _ = try await connection.query("PRAGMA synchronous = FULL")
            return SQLiteEventStore(connection: connection, threadPool: threadPool, fencing: fencing)
        } catch {
            // An open connection must be closed before it goes (SQLiteNIO traps otherwise), also
            // when the open was cancelled half-way.
            try? await connection.close()
            try? await threadPool.shutdownGracefully()
            throw .unavailable("cannot open SQLite database at \(path): \(error)")
        }
    }

    public func close() async {
        try? await connection.close()
        try? await threadPool.shutdownGracefully()
    }

    public func migrate() async throws(StorageError) {
        try await transaction { db in
            _ = try await db.query(
                "CREATE TABLE IF NOT EXISTS artpay_schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
            let applied = Set(
                try await db.query("SELECT version FROM artpay_schema_migrations").compactMap {
                    $0.column("version")?.integer
                })
            for migration in SQLiteSchema.migrations where !applied.contains(migration.version) {
                for statement in migration.statements { _ = try await db.query(statement) }
                _ = try await db.query(
                    "INSERT INTO artpay_schema_migrations (version, applied_at) VALUES (?, datetime('now'))",
                    [.integer(migration.version)])
            }
        }
    }

    public func acquire(shard: ShardID, node: NodeID) async throws(StorageError) -> ShardLease {
        let epoch: Int64 = try await transaction { db in
            let rows = try await db.query(
                """
                INSERT INTO shard_leases (shard, epoch, owner, acquired_at) VALUES (?, 1, ?, datetime('now'))
                ON CONFLICT (shard) DO UPDATE
                    SET epoch = shard_leases.epoch + 1, owner = excluded.owner, acquired_at = excluded.acquired_at
                RETURNING epoch
                """, [.integer(Int(shard.rawValue)), .text(node.rawValue)])
            guard let epoch = rows.first?.column("epoch")?.integer else {
                throw StorageError.unavailable("acquire returned no row")
            }
            return Int64(epoch)
        }
        return ShardLease(shard: shard, epoch: Epoch(epoch), owner: node)
    }

    public func lease(of shard: ShardID) async throws(StorageError) -> ShardLease? {
        let row: SQLiteRow? = try await exclusive {
            try await connection.query(
                "SELECT epoch, owner FROM shard_leases WHERE shard = ?", [.integer(Int(shard.rawValue))]
            ).first
        }
        guard let row else { return nil }
        guard let epoch = row.column("epoch")?.integer, let owner = row.column("owner")?.string.flatMap(NodeID.init)
        else { throw .unavailable("lease of \(shard) is malformed") }
        return ShardLease(shard: shard, epoch: Epoch(Int64(epoch)), owner: owner)
    }

    public func append(_ batch: AppendBatch) async throws(StorageError) {
        try batch.validate()
        guard !batch.entries.isEmpty else { return }
        let race = StorageError.seqConflict(
            auction: batch.entries[0].auction, expectedLastSeq: batch.entries[0].firstSeq - 1, actualLastSeq: nil)
        try await transaction(uniqueViolation: race) { db in
            var fenced: [StorageError.FencedShard] = []
            var checked = Set<ShardID>()
            for entry in batch.entries where fencing == .enforced && checked.insert(entry.shard).inserted {
                let current = try await db.query(
                    "SELECT epoch FROM shard_leases WHERE shard = ?", [.integer(Int(entry.shard.rawValue))]
                ).first?.column("epoch")?.integer.map { Epoch(Int64($0)) }
                if current != entry.epoch {
                    fenced.append(.init(shard: entry.shard, writerEpoch: entry.epoch, currentEpoch: current))
                }
            }
            if !fenced.isEmpty { throw StorageError.fenced(fenced) }
            for entry in batch.entries {
                let last =
                    try await db.query(
                        "SELECT coalesce(max(seq), 0) AS last FROM auction_events WHERE auction_id = ?",
                        [.text(entry.auction.rawValue)]
                    ).first?.column("last")?.integer ?? 0
                guard Int64(last) == entry.firstSeq - 1 else {
                    throw StorageError.seqConflict(
                        auction: entry.auction, expectedLastSeq: entry.firstSeq - 1, actualLastSeq: Int64(last))
                }
            }
            var position =
                try await db.query("SELECT last FROM event_positions WHERE id = 1").first?.column("last")?.integer ?? 0
            for entry in batch.entries {
                for (offset, event) in entry.events.enumerated() {
                    let (kind, payload) = EventCodec.encode(event)
                    position += 1
                    _ = try await db.query(
                        """
                        INSERT INTO auction_events (auction_id, seq, shard, epoch, kind, payload, recorded_at, position)
                        VALUES (?, ?, ?, ?, ?, ?, datetime('now'), ?)
                        """,
                        [
                            .text(entry.auction.rawValue), .integer(Int(entry.firstSeq) + offset),
                            .integer(Int(entry.shard.rawValue)), .integer(Int(entry.epoch.rawValue)), .text(kind),
                            .text(payload), .integer(position),
                        ])
                }
                _ = try await db.query(
                    """
                    INSERT INTO auction_heads (auction_id, last_seq, change)
                    VALUES (?, ?, (SELECT coalesce(max(change), 0) + 1 FROM auction_heads))
                    ON CONFLICT (auction_id) DO UPDATE SET last_seq = excluded.last_seq, change = excluded.change
                    """, [.text(entry.auction.rawValue), .integer(Int(entry.lastSeq))])
                if let snapshot = entry.snapshot {
                    _ = try await db.query(
                        """
                        INSERT INTO auction_snapshots (auction_id, seq, state, taken_at)
                        VALUES (?, ?, ?, datetime('now'))
                        ON CONFLICT (auction_id) DO UPDATE
                            SET seq = excluded.seq, state = excluded.state, taken_at = excluded.taken_at
                            WHERE auction_snapshots.seq < excluded.seq
                        """,
                        [
                            .text(entry.auction.rawValue), .integer(Int(snapshot.seq)),
                            .text(EventCodec.encodeSnapshot(snapshot)),
                        ])
                }
            }
            _ = try await db.query("UPDATE event_positions SET last = ? WHERE id = 1", [.integer(position)])
        }
    }

    public func load(_ auction: AuctionID) async throws(StorageError) -> StoredAuction {
        let row: SQLiteRow? = try await exclusive {
            try await connection.query(
                "SELECT seq, state FROM auction_snapshots WHERE auction_id = ?", [.text(auction.rawValue)]
            ).first
        }
        var snapshot: Auction?
        if let row {
            guard let seq = row.column("seq")?.integer, let state = row.column("state")?.string else {
                throw .corruptRecord(auction: auction, seq: 0, reason: "malformed snapshot row")
            }
            snapshot = try EventCodec.decodeSnapshot(state, auction: auction, seq: Int64(seq))
        }
        let tail = try await events(of: auction, after: snapshot?.seq ?? 0, limit: Int.max)
        return StoredAuction(snapshot: snapshot, tail: tail)
    }

    public func events(
        of auction: AuctionID, after afterSeq: Int64, limit: Int
    ) async throws(StorageError) -> [StoredEvent] {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT seq, epoch, kind, payload FROM auction_events
                WHERE auction_id = ? AND seq > ? ORDER BY seq LIMIT ?
                """, [.text(auction.rawValue), .integer(Int(afterSeq)), .integer(limit)])
        }
        var raw: [(Int64, Int64, String, String)] = []
        raw.reserveCapacity(rows.count)
        for row in rows {
            guard let seq = row.column("seq")?.integer, let epoch = row.column("epoch")?.integer,
                let kind = row.column("kind")?.string, let payload = row.column("payload")?.string
            else {
                throw .corruptRecord(
                    auction: auction, seq: Int64(row.column("seq")?.integer ?? 0), reason: "malformed event row")
            }
            raw.append((Int64(seq), Int64(epoch), kind, payload))
        }
        if let first = raw.first?.0, first > afterSeq + 1 {
            let compacted: [SQLiteRow] = try await exclusive {
                try await connection.query(
                    "SELECT compacted_seq FROM auction_archive WHERE auction_id = ?", [.text(auction.rawValue)])
            }
            if compacted.first?.column("compacted_seq")?.integer == Int(first) {
                throw .compacted(auction: auction, keptFrom: first)
            }
        }
        return try raw.storedEvents(of: auction, after: afterSeq)
    }

    public func logHeads(after cursor: LogCursor, limit: Int) async throws(StorageError) -> LogHeadsPage {
        // One writer at a time (BEGIN IMMEDIATE): changes are numbered in commit order.
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                "SELECT auction_id, last_seq, change FROM auction_heads WHERE change > ? ORDER BY change LIMIT ?",
                [.integer(Int(cursor.change)), .integer(limit)])
        }
        var next = cursor
        var heads: [LogHead] = []
        heads.reserveCapacity(rows.count)
        for row in rows {
            guard let id = row.column("auction_id")?.string.flatMap(AuctionID.init(rawValue:)),
                let lastSeq = row.column("last_seq")?.integer, let change = row.column("change")?.integer
            else {
                throw .unavailable("malformed log head row")
            }
            heads.append(LogHead(auction: id, lastSeq: Int64(lastSeq)))
            next = LogCursor(transaction: 0, change: Int64(change))
        }
        return LogHeadsPage(heads: heads, next: next)
    }

    public func feed(after cursor: FeedCursor, limit: Int) async throws(StorageError) -> FeedPage {
        // One writer at a time (BEGIN IMMEDIATE): positions are taken in commit order.
        // One statement: the horizon (moved by compaction) and the events after the cursor together.
        let found: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT h.position AS horizon, e.position, e.auction_id, e.seq, e.epoch, e.kind, e.payload
                FROM feed_horizon h LEFT JOIN (
                    SELECT position, auction_id, seq, epoch, kind, payload FROM auction_events
                    WHERE position > ? ORDER BY position LIMIT ?
                ) e ON 1
                WHERE h.id = 1 ORDER BY e.position
                """, [.integer(Int(cursor.position)), .integer(max(0, limit))])
        }
        guard let horizonPosition = found.first?.column("horizon")?.integer else {
            throw .unavailable("the feed's horizon row is missing")
        }
        let horizon = FeedCursor(transaction: 0, position: Int64(horizonPosition))
        if cursor != .start, cursor < horizon { throw .feedCursorExpired(cursor, horizon: horizon) }
        let rows = found.filter { $0.column("position")?.integer != nil }
        if rows.isEmpty, cursor != .start {
            let last: Int = try await exclusive {
                try await connection.query("SELECT last FROM event_positions WHERE id = 1").first?.column("last")?
                    .integer ?? 0
            }
            if cursor.transaction != 0 || cursor.position > Int64(last) { throw .unknownFeedCursor(cursor) }
        }
        var next = cursor
        var entries: [FeedEntry] = []
        entries.reserveCapacity(rows.count)
        for row in rows {
            guard let position = row.column("position")?.integer,
                let id = row.column("auction_id")?.string.flatMap(AuctionID.init(rawValue:)),
                let seq = row.column("seq")?.integer, let epoch = row.column("epoch")?.integer,
                let kind = row.column("kind")?.string, let payload = row.column("payload")?.string
            else {
                throw .unavailable("malformed feed row")
            }
            let event = try EventCodec.decode(kind: kind, payload: payload, auction: id, seq: Int64(seq))
            next = FeedCursor(transaction: 0, position: Int64(position))
            entries.append(
                FeedEntry(
                    cursor: next, event: StoredEvent(auction: id, seq: Int64(seq), epoch: Epoch(Int64(epoch)), event: event)))
        }
        return FeedPage(entries: entries, next: next)
    }

    // MARK: - Turn-taking and transactions

    /// Runs `body` while no other operation of this store uses the connection; its errors as they are.
    func takingTurns<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
        defer {
            if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
        }
        return try await body()
    }

    /// Runs `body` in turn (`takingTurns`), mapping failures to `StorageError`: a constraint
    /// violation to `uniqueViolation` when given, anything else to `unavailable`.
    func exclusive<T: Sendable>(
        uniqueViolation: StorageError? = nil, _ body: () async throws -> T
    ) async throws(StorageError) -> T {
        do {
            return try await takingTurns(body)
        } catch let error as StorageError {
            throw error
        } catch let error as SQLiteError {
            if error.isConstraintViolation, let uniqueViolation { throw uniqueViolation }
            throw .unavailable("SQLite: \(error.message)")
        } catch {
            throw .unavailable("SQLite: \(error)")
        }
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back when it throws.
    func transaction<T: Sendable>(
        uniqueViolation: StorageError? = nil, _ body: (SQLiteConnection) async throws -> T
    ) async throws(StorageError) -> T {
        try await exclusive(uniqueViolation: uniqueViolation) {
            _ = try await connection.query("BEGIN IMMEDIATE")
            do {
                let result = try await body(connection)
                _ = try await connection.query("COMMIT")
                return result
            } catch {
                _ = try? await connection.query("ROLLBACK")
                throw error
            }
        }
    }
}

/// The SQLite schema, as an ordered list of migrations (the same versions as PostgreSQL's).
enum SQLiteSchema {
    static let migrations: [SchemaMigration] = [
        SchemaMigration(
            version: 1,
            statements: [
                """
                CREATE TABLE shard_leases (
                    shard INTEGER PRIMARY KEY,
                    epoch INTEGER NOT NULL CHECK (epoch > 0),
                    owner TEXT NOT NULL,
                    acquired_at TEXT NOT NULL
                )
                """,
                """
                CREATE TABLE auction_events (
                    auction_id TEXT NOT NULL,
                    seq INTEGER NOT NULL CHECK (seq > 0),
                    shard INTEGER NOT NULL,
                    epoch INTEGER NOT NULL,
                    kind TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    recorded_at TEXT NOT NULL,
                    PRIMARY KEY (auction_id, seq)
                ) WITHOUT ROWID
                """,
                """
                CREATE TABLE auction_snapshots (
                    auction_id TEXT PRIMARY KEY,
                    seq INTEGER NOT NULL CHECK (seq > 0),
                    state TEXT NOT NULL,
                    taken_at TEXT NOT NULL
                )
                """,
            ]
        ),
        SchemaMigration(
            version: 2,
            statements: [
                """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY,
                    username TEXT NOT NULL UNIQUE,
                    password_hash TEXT NOT NULL,
                    roles TEXT NOT NULL,
                    created_at INTEGER NOT NULL
                )
                """
            ]
        ),
        // Log heads (see the PostgreSQL schema's version 3); changes are numbered in commit order.
        SchemaMigration(
            version: 3,
            statements: [
                """
                CREATE TABLE auction_heads (
                    auction_id TEXT PRIMARY KEY,
                    last_seq INTEGER NOT NULL,
                    change INTEGER NOT NULL
                )
                """,
                "CREATE INDEX auction_heads_by_change ON auction_heads (change)",
                """
                INSERT INTO auction_heads (auction_id, last_seq, change)
                SELECT auction_id, max(seq), row_number() OVER (ORDER BY auction_id)
                FROM auction_events GROUP BY auction_id
                """,
            ]
        ),
        // PostgreSQL's version 4 tunes its append function's plans; nothing to do here.
        SchemaMigration(version: 4, statements: []),
        // Token versions and login failures (see the PostgreSQL schema's version 5).
        SchemaMigration(
            version: 5,
            statements: [
                "ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0",
                """
                CREATE TABLE login_failures (
                    username TEXT PRIMARY KEY,
                    failures INTEGER NOT NULL,
                    locked_until INTEGER NOT NULL
                )
                """,
            ]
        ),
        // Saved payment methods and blocks from bidding (see the PostgreSQL schema's version 6).
        SchemaMigration(
            version: 6,
            statements: [
                """
                CREATE TABLE payment_methods (
                    user_id TEXT NOT NULL REFERENCES users (id),
                    method_id TEXT NOT NULL,
                    brand TEXT NOT NULL,
                    last4 TEXT NOT NULL,
                    saved_at INTEGER NOT NULL,
                    PRIMARY KEY (user_id, method_id)
                )
                """,
                """
                CREATE TABLE bidding_blocks (
                    user_id TEXT NOT NULL REFERENCES users (id),
                    auction_id TEXT NOT NULL,
                    blocked_at INTEGER NOT NULL,
                    lifted_at INTEGER,
                    lifted_by TEXT,
                    PRIMARY KEY (user_id, auction_id)
                )
                """,
            ]
        ),
        // Paddle numbers (see the PostgreSQL schema's version 7).
        SchemaMigration(
            version: 7,
            statements: [
                "CREATE TABLE paddle_scopes (scope TEXT PRIMARY KEY, last_paddle INTEGER NOT NULL)",
                """
                CREATE TABLE paddles (
                    scope TEXT NOT NULL,
                    user_id TEXT NOT NULL,
                    paddle INTEGER NOT NULL,
                    PRIMARY KEY (scope, user_id),
                    UNIQUE (scope, paddle)
                )
                """,
                "CREATE INDEX paddles_by_user ON paddles (user_id)",
            ]
        ),
        // The commit-ordered feed (see the PostgreSQL schema's version 8). One writer commits at a
        // time, so a counter taken inside the append's transaction numbers events in commit order;
        // the counter lives in its own row so a position is never reused, whatever is deleted.
        SchemaMigration(
            version: 8,
            statements: [
                "ALTER TABLE auction_events ADD COLUMN position INTEGER",
                """
                UPDATE auction_events SET position = (
                    SELECT n FROM (
                        SELECT auction_id AS a, seq AS s,
                            row_number() OVER (ORDER BY recorded_at, auction_id, seq) AS n
                        FROM auction_events
                    ) WHERE a = auction_events.auction_id AND s = auction_events.seq
                )
                """,
                "CREATE UNIQUE INDEX auction_events_in_commit_order ON auction_events (position)",
                "CREATE TABLE event_positions (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
                "INSERT INTO event_positions (id, last) SELECT 1, coalesce(max(position), 0) FROM auction_events",
            ]
        ),
        // Webhooks (see the PostgreSQL schema's version 9).
        SchemaMigration(
            version: 9,
            statements: [
                """
                CREATE TABLE webhook_endpoints (
                    id TEXT PRIMARY KEY,
                    url TEXT NOT NULL,
                    types TEXT NOT NULL,
                    secret TEXT NOT NULL,
                    created_at INTEGER NOT NULL,
                    cursor TEXT NOT NULL,
                    generation INTEGER NOT NULL DEFAULT 0
                )
                """,
                """
                CREATE TABLE webhook_deliveries (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    endpoint_id TEXT NOT NULL,
                    cursor TEXT NOT NULL,
                    auction_id TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    type TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    outcome TEXT NOT NULL,
                    status INTEGER,
                    error TEXT,
                    attempted_at INTEGER NOT NULL,
                    node TEXT NOT NULL
                )
                """,
                "CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id)",
                "CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (attempted_at)",
            ]
        ),
        // The archive (see the PostgreSQL schema's version 10).
        SchemaMigration(
            version: 10,
            statements: [
                """
                CREATE TABLE auction_archive (
                    auction_id TEXT PRIMARY KEY,
                    seq INTEGER NOT NULL,
                    sale_id TEXT,
                    seller_id TEXT NOT NULL,
                    currency TEXT NOT NULL,
                    result TEXT NOT NULL,
                    starting_price INTEGER NOT NULL,
                    reserve_price INTEGER,
                    hammer INTEGER,
                    bids INTEGER NOT NULL,
                    bidders INTEGER NOT NULL,
                    extensions INTEGER NOT NULL,
                    ended_at INTEGER NOT NULL,
                    archived_at INTEGER NOT NULL,
                    document TEXT NOT NULL
                )
                """,
                "CREATE INDEX auction_archive_by_end ON auction_archive (ended_at, auction_id)",
                "CREATE INDEX auction_archive_by_seller ON auction_archive (seller_id, ended_at)",
                "CREATE INDEX auction_archive_by_sale ON auction_archive (sale_id, ended_at)",
            ]
        ),
        // Compaction of archived lots' live logs (see the PostgreSQL schema's version 11).
        SchemaMigration(
            version: 11,
            statements: [
                "ALTER TABLE auction_archive ADD COLUMN compacted_seq INTEGER",
                "CREATE INDEX auction_archive_by_archiving ON auction_archive (archived_at)",
                "CREATE TABLE feed_horizon (id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL)",
                "INSERT INTO feed_horizon (id, position) VALUES (1, 0)",
            ]
        ),
    ]
}

extension SQLiteEventStore: UserStore {
    public func createUser(_ user: StoredUser) async throws(UserStoreError) {
        do {
            _ = try await takingTurns {
                try await connection.query(
                    "INSERT INTO users (id, username, password_hash, roles, created_at) VALUES (?, ?, ?, ?, ?)",
                    [
                        .text(user.id.rawValue), .text(user.username), .text(user.passwordHash),
                        .text(user.roles.joined(separator: ",")), .integer(Int(user.createdAt.millisecondsSinceEpoch)),
                    ])
            }
        } catch let error as SQLiteError where error.isConstraintViolation {
            // Ids are random: a constraint violation here is the unique username.
            throw .usernameTaken
        } catch {
            throw .unavailable("SQLite: \(error)")
        }
    }

    public func user(named username: String) async throws(UserStoreError) -> StoredUser? {
        try await fetchUser(
"SELECT \(Self.userColumns) FROM users WHERE username = ?", username)
    }

    public func user(id: UserID) async throws(UserStoreError) -> StoredUser? {
        try await fetchUser(
"SELECT \(Self.userColumns) FROM users WHERE id = ?", id.rawValue)
    }

    public func revokeTokens(of id: UserID) async throws(UserStoreError) {
        let changed: Bool
        do {
            changed = try await exclusive {
                _ = try await connection.query(
                    "UPDATE users SET token_version = token_version + 1 WHERE id = ?", [.text(id.rawValue)])
                let rows = try await connection.query("SELECT changes() AS n")
                return (rows.first?.column("n")?.integer ?? 0) > 0
            }
        } catch {
            throw .unavailable(error.description)
        }
        if !changed { throw .unknownUser }
    }

    public func loginFailures(of username: String) async throws(UserStoreError) -> LoginFailures? {
        let row: SQLiteRow?
        do {
            row = try await exclusive {
                try await connection.query(
                    "SELECT failures, locked_until FROM login_failures WHERE username = ?", [.text(username)]
                ).first
            }
        } catch {
            throw .unavailable(error.description)
        }
        return row.map(Self.loginFailures)
    }

    public func recordLoginFailure(of username: String, now: Timestamp, policy: LoginLockPolicy)
        async throws(UserStoreError) -> LoginFailures
    {
        do {
            return try await exclusive {
                _ = try await connection.query(
                    """
                    INSERT INTO login_failures (username, failures, locked_until) VALUES (?, 1, 0)
                    ON CONFLICT (username) DO UPDATE SET failures = failures + 1
                    """, [.text(username)])
                let counted = try await connection.query(
                    "SELECT failures, locked_until FROM login_failures WHERE username = ?", [.text(username)])
                var state =
                    counted.first.map(Self.loginFailures)
                    ?? LoginFailures(failures: 1, lockedUntil: .init(millisecondsSinceEpoch: 0))
                let lock = policy.lock(afterFailures: state.failures)
                if lock > .zero {
                    let until = max(state.lockedUntil, now.advanced(by: lock))
                    _ = try await connection.query(
                        "UPDATE login_failures SET locked_until = ? WHERE username = ?",
                        [.integer(Int(until.millisecondsSinceEpoch)), .text(username)])
                    state.lockedUntil = until
                }
                return state
            }
        } catch {
            throw .unavailable(error.description)
        }
    }

    public func clearLoginFailures(of username: String) async throws(UserStoreError) {
        do {
            _ = try await exclusive {
                try await connection.query("DELETE FROM login_failures WHERE username = ?", [.text(username)])
            }
        } catch {
            throw .unavailable(error.description)
        }
    }

    private static func loginFailures(_ row: SQLiteRow) -> LoginFailures {
        LoginFailures(
            failures: row.column("failures")?.integer ?? 0,
            lockedUntil: Timestamp(millisecondsSinceEpoch: Int64(row.column("locked_until")?.integer ?? 0)))
    }

    public func setRoles(_ roles: [String], of id: UserID) async throws(UserStoreError) {
        let changed: Bool
        do {
            changed = try await exclusive {
                _ = try await connection.query(
                    "UPDATE users SET roles = ?, token_version = token_version + 1 WHERE id = ?",
                    [.text(roles.joined(separator: ",")), .text(id.rawValue)])
                let rows = try await connection.query("SELECT changes() AS n")
                return (rows.first?.column("n")?.integer ?? 0) > 0
            }
        } catch {
            throw .unavailable(error.description)
        }
        if !changed { throw .unknownUser }
    }

    private func fetchUser(_ sql: String, _ key: String) async throws(UserStoreError) -> StoredUser? {
        let row: SQLiteRow?
        do {
            row = try await exclusive { try await connection.query(sql, [.text(key)]).first }
        } catch {
            throw .unavailable(error.description)
        }
        guard let row else { return nil }
        guard let id = row.column("id")?.string.flatMap(UserID.init(rawValue:)),
            let username = row.column("username")?.string, let hash = row.column("password_hash")?.string,
            let roles = row.column("roles")?.string, let created = row.column("created_at")?.integer
        else { throw .unavailable("malformed user row") }
        return StoredUser(
            id: id, username: username, passwordHash: hash, roles: roles.split(separator: ",").map(String.init),
            createdAt: Timestamp(millisecondsSinceEpoch: Int64(created)),
            tokenVersion: Int64(row.column("token_version")?.integer ?? 0),
            blockedFromBidding: (row.column("blocked")?.integer ?? 0) != 0)
    }

    private static let userColumns = """
        id, username, password_hash, roles, created_at, token_version,
        EXISTS (SELECT 1 FROM bidding_blocks b WHERE b.user_id = users.id AND b.lifted_at IS NULL) AS blocked
        """

    // MARK: - Payment methods and blocks

    /// Runs `sql` alone on the connection; the number of rows it changed.
    private func changing(_ sql: String, _ bindings: [SQLiteData]) async throws(UserStoreError) -> Int {
        do {
            return try await exclusive {
                _ = try await connection.query(sql, bindings)
                let rows = try await connection.query("SELECT changes() AS n")
                return rows.first?.column("n")?.integer ?? 0
            }
        } catch {
            throw .unavailable(error.description)
        }
    }

    public func savePaymentMethod(_ method: SavedPaymentMethod, for user: UserID) async throws(UserStoreError) {
        let saved = try await changing(
            """
            INSERT INTO payment_methods (user_id, method_id, brand, last4, saved_at)
            SELECT id, ?, ?, ?, ? FROM users WHERE id = ?
            ON CONFLICT (user_id, method_id) DO UPDATE
                SET brand = excluded.brand, last4 = excluded.last4, saved_at = excluded.saved_at
            """,
            [
                .text(method.id.rawValue), .text(method.brand), .text(method.last4),
                .integer(Int(method.savedAt.millisecondsSinceEpoch)), .text(user.rawValue),
            ])
        if saved == 0 { throw .unknownUser }
    }

    public func paymentMethods(of user: UserID) async throws(UserStoreError) -> [SavedPaymentMethod] {
        let rows: [SQLiteRow]
        do {
            rows = try await exclusive {
                try await connection.query(
                    """
                    SELECT method_id, brand, last4, saved_at FROM payment_methods WHERE user_id = ?
                    ORDER BY saved_at DESC, method_id
                    """, [.text(user.rawValue)])
            }
        } catch {
            throw .unavailable(error.description)
        }
        return rows.compactMap { row in
            guard let id = row.column("method_id")?.string.flatMap(PaymentMethodID.init(rawValue:)),
                let brand = row.column("brand")?.string, let last4 = row.column("last4")?.string,
                let savedAt = row.column("saved_at")?.integer
            else { return nil }
            return SavedPaymentMethod(
                id: id, brand: brand, last4: last4, savedAt: Timestamp(millisecondsSinceEpoch: Int64(savedAt)))
        }
    }

    public func removePaymentMethod(_ method: PaymentMethodID, of user: UserID) async throws(UserStoreError) -> Bool {
        try await changing(
            "DELETE FROM payment_methods WHERE user_id = ? AND method_id = ?",
            [.text(user.rawValue), .text(method.rawValue)]) > 0
    }

    public func blockFromBidding(_ user: UserID, defaultedOn auction: AuctionID, at: Timestamp)
        async throws(UserStoreError) -> Bool
    {
        try await changing(
            """
            INSERT INTO bidding_blocks (user_id, auction_id, blocked_at)
            SELECT id, ?, ? FROM users WHERE id = ?
            ON CONFLICT (user_id, auction_id) DO NOTHING
            """,
            [.text(auction.rawValue), .integer(Int(at.millisecondsSinceEpoch)), .text(user.rawValue)]) > 0
    }

    public func liftBiddingBlocks(of user: UserID, by admin: UserID, at: Timestamp) async throws(UserStoreError) -> Int {
        try await changing(
            "UPDATE bidding_blocks SET lifted_at = ?, lifted_by = ? WHERE user_id = ? AND lifted_at IS NULL",
            [.integer(Int(at.millisecondsSinceEpoch)), .text(admin.rawValue), .text(user.rawValue)])
    }

    public func biddingBlocks(of user: UserID) async throws(UserStoreError) -> [BiddingBlock] {
        let rows: [SQLiteRow]
        do {
            rows = try await exclusive {
                try await connection.query(
                    """
                    SELECT auction_id, blocked_at, lifted_at, lifted_by FROM bidding_blocks WHERE user_id = ?
                    ORDER BY blocked_at DESC, auction_id
                    """, [.text(user.rawValue)])
            }
        } catch {
            throw .unavailable(error.description)
        }
        return rows.compactMap { row in
            guard let auction = row.column("auction_id")?.string.flatMap(AuctionID.init(rawValue:)),
                let blockedAt = row.column("blocked_at")?.integer
            else { return nil }
            return BiddingBlock(
                auction: auction, blockedAt: Timestamp(millisecondsSinceEpoch: Int64(blockedAt)),
                liftedAt: row.column("lifted_at")?.integer.map { Timestamp(millisecondsSinceEpoch: Int64($0)) },
                liftedBy: row.column("lifted_by")?.string.flatMap(UserID.init(rawValue:)))
        }
    }

    public func paddle(of user: UserID, in scope: String) async throws(UserStoreError) -> Int {
        let paddle: Int?
        do {
            // One write transaction (BEGIN IMMEDIATE) across the processes sharing the file.
            paddle = try await transaction { connection in
                let bindings: [SQLiteData] = [.text(scope), .text(user.rawValue)]
                let existing = try await connection.query(
                    "SELECT paddle FROM paddles WHERE scope = ? AND user_id = ?", bindings)
                if let paddle = existing.first?.column("paddle")?.integer { return paddle }
                let next = try await connection.query(
                    """
                    INSERT INTO paddle_scopes (scope, last_paddle) VALUES (?, 101)
                    ON CONFLICT (scope) DO UPDATE SET last_paddle = last_paddle + 1
                    RETURNING last_paddle
                    """, [.text(scope)])
                guard let number = next.first?.column("last_paddle")?.integer else { return nil }
                _ = try await connection.query(
                    "INSERT INTO paddles (scope, user_id, paddle) VALUES (?, ?, ?)", bindings + [.integer(number)])
                return number
            }
        } catch {
            throw .unavailable(error.description)
        }
        guard let paddle else { throw .unavailable("SQLite: no paddle number was returned") }
        return paddle
    }

    public func paddles(in scopes: [String]) async throws(UserStoreError) -> [String: [UserID: Int]] {
        var paddles: [String: [UserID: Int]] = [:]
        // SQLite binds at most 32,766 parameters per statement.
        for part in stride(from: 0, to: scopes.count, by: 500).map({ scopes[$0..<min($0 + 500, scopes.count)] }) {
            let rows: [SQLiteRow]
            do {
                rows = try await exclusive {
                    try await connection.query(
                        "SELECT scope, user_id, paddle FROM paddles WHERE scope IN (\(part.map { _ in "?" }.joined(separator: ",")))",
                        part.map { .text($0) })
                }
            } catch {
                throw .unavailable(error.description)
            }
            for row in rows {
                guard let scope = row.column("scope")?.string,
                    let user = row.column("user_id")?.string.flatMap(UserID.init(rawValue:)),
                    let paddle = row.column("paddle")?.integer
                else { continue }
                paddles[scope, default: [:]][user] = paddle
            }
        }
        return paddles
    }
}

extension SQLiteEventStore {
    public func paddles(of user: UserID) async throws(UserStoreError) -> [String: Int] {
        let rows: [SQLiteRow]
        do {
            rows = try await exclusive {
                try await connection.query("SELECT scope, paddle FROM paddles WHERE user_id = ?", [.text(user.rawValue)])
            }
        } catch {
            throw .unavailable(error.description)
        }
        var paddles: [String: Int] = [:]
        for row in rows {
            if let scope = row.column("scope")?.string, let paddle = row.column("paddle")?.integer {
                paddles[scope] = paddle
            }
        }
        return paddles
    }
}

extension SQLiteError {
    /// A UNIQUE, PRIMARY KEY or other constraint refused the statement.
    var isConstraintViolation: Bool {
        switch reason {
        case .constraint, .constraintUniqueFailed, .constraintPrimaryKeyFailed: true
        default: false
        }
    }
}
