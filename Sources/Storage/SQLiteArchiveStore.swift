public import AuctionCore
import SQLiteNIO

extension SQLiteEventStore: ArchiveStore {
    public func archive(_ record: AuctionRecord, at time: Timestamp) async throws(StorageError) -> Bool {
        let document = ArchiveCodec.encode(record)
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                INSERT INTO auction_archive (auction_id, seq, sale_id, seller_id, currency, result, starting_price,
                    reserve_price, hammer, bids, bidders, extensions, ended_at, archived_at, document)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (auction_id) DO UPDATE SET seq = excluded.seq, sale_id = excluded.sale_id,
                    seller_id = excluded.seller_id, currency = excluded.currency, result = excluded.result,
                    starting_price = excluded.starting_price, reserve_price = excluded.reserve_price,
                    hammer = excluded.hammer, bids = excluded.bids, bidders = excluded.bidders,
                    extensions = excluded.extensions, ended_at = excluded.ended_at,
                    archived_at = excluded.archived_at, document = excluded.document
                WHERE auction_archive.seq < excluded.seq
                RETURNING auction_id
                """,
                [
                    .text(record.auctionId), .integer(Int(record.seq)), record.saleId.map { .text($0) } ?? .null,
                    .text(record.sellerId), .text(record.currency), .text(record.result.rawValue),
                    .integer(Int(record.startingPrice)), record.reservePrice.map { .integer(Int($0)) } ?? .null,
                    record.hammer.map { .integer(Int($0)) } ?? .null, .integer(record.bids.count),
                    .integer(record.bidderCount), .integer(record.extensions.count),
                    .integer(Int(record.endedAt.millisecondsSinceEpoch)), .integer(Int(time.millisecondsSinceEpoch)),
                    .text(document),
                ])
        }
        return !rows.isEmpty
    }

    public func archivedAuction(_ id: AuctionID) async throws(StorageError) -> AuctionRecord? {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                "SELECT document FROM auction_archive WHERE auction_id = ?", [.text(id.rawValue)])
        }
        guard let text = rows.first?.column("document")?.string else { return nil }
        return try ArchiveCodec.decode(text, auction: id.rawValue)
    }

    public func archivedMarks(of ids: [AuctionID]) async throws(StorageError) -> [AuctionID: ArchivedMark] {
        var marks: [AuctionID: ArchivedMark] = [:]
        for part in stride(from: 0, to: ids.count, by: 500).map({ ids[$0..<min($0 + 500, ids.count)] }) {
            let places = Array(repeating: "?", count: part.count).joined(separator: ", ")
            let rows: [SQLiteRow] = try await exclusive {
                try await connection.query(
                    "SELECT auction_id, seq, ended_at FROM auction_archive WHERE auction_id IN (\(places))",
                    part.map { .text($0.rawValue) })
            }
            for row in rows {
                if let id = row.column("auction_id")?.string.flatMap(AuctionID.init(rawValue:)),
                    let seq = row.column("seq")?.integer, let endedAt = row.column("ended_at")?.integer
                {
                    marks[id] = ArchivedMark(
                        seq: Int64(seq), endedAt: Timestamp(millisecondsSinceEpoch: Int64(endedAt)))
                }
            }
        }
        return marks
    }

    /// The WHERE clause of `query` and its bindings (`table`: the archive's alias and a dot).
    private static func filter(_ query: ArchiveQuery, table: String = "") -> (String, [SQLiteData]) {
        var clauses = ["1 = 1"]
        var binds: [SQLiteData] = []
        if let from = query.from {
            clauses.append("\(table)ended_at >= ?")
            binds.append(.integer(Int(from.millisecondsSinceEpoch)))
        }
        if let to = query.to {
            clauses.append("\(table)ended_at < ?")
            binds.append(.integer(Int(to.millisecondsSinceEpoch)))
        }
        if let sale = query.sale {
            clauses.append("\(table)sale_id = ?")
            binds.append(.text(sale.rawValue))
        }
        if let seller = query.seller {
            clauses.append("\(table)seller_id = ?")
            binds.append(.text(seller.rawValue))
        }
        return (clauses.joined(separator: " AND "), binds)
    }

    public func compactionCandidates(archivedBefore cutoff: Timestamp, limit: Int) async throws(StorageError)
        -> [AuctionID]
    {
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT auction_id FROM auction_archive
                WHERE archived_at < ? AND compacted_seq IS NOT seq
                ORDER BY archived_at, auction_id LIMIT ?
                """, [.integer(Int(cutoff.millisecondsSinceEpoch)), .integer(max(0, limit))])
        }
        return rows.compactMap { $0.column("auction_id")?.string.flatMap(AuctionID.init(rawValue:)) }
    }

    public func compact(_ auction: AuctionID, keeping snapshot: Auction) async throws(StorageError)
        -> CompactionOutcome
    {
        let state = EventCodec.encodeSnapshot(snapshot)
        let id = SQLiteData.text(auction.rawValue)
        let seq = SQLiteData.integer(Int(snapshot.seq))
        return try await transaction { connection in
            let archived = try await connection.query("SELECT seq FROM auction_archive WHERE auction_id = ?", [id])
                .first?.column("seq")?.integer
            let last = try await connection.query("SELECT max(seq) AS last FROM auction_events WHERE auction_id = ?", [id])
                .first?.column("last")?.integer
            guard archived == Int(snapshot.seq), last == Int(snapshot.seq) else { return .archiveBehind }
            let top = try await connection.query(
                "SELECT max(position) AS top FROM auction_events WHERE auction_id = ? AND seq < ?", [id, seq]
            ).first?.column("top")?.integer
            if let top {
                let behind = try await connection.query(
                    """
                    SELECT count(*) AS n FROM webhook_endpoints
                    WHERE CAST(substr(cursor, instr(cursor, '.') + 1) AS INTEGER) < ?
                    """, [.integer(top)]
                ).first?.column("n")?.integer ?? 0
                if behind > 0 { return .webhooksBehind }
            }
            _ = try await connection.query(
                """
                INSERT INTO auction_snapshots (auction_id, seq, state, taken_at) VALUES (?, ?, ?, CURRENT_TIMESTAMP)
                ON CONFLICT (auction_id) DO UPDATE SET seq = excluded.seq, state = excluded.state,
                    taken_at = excluded.taken_at
                    WHERE auction_snapshots.seq <= excluded.seq
                """, [id, seq, .text(state)])
            if let top {
                _ = try await connection.query(
                    "UPDATE feed_horizon SET position = ? WHERE id = 1 AND position < ?", [.integer(top), .integer(top)])
            }
            let removed = try await connection.query(
                "DELETE FROM auction_events WHERE auction_id = ? AND seq < ? RETURNING seq", [id, seq]
            ).count
            _ = try await connection.query(
                "UPDATE auction_archive SET compacted_seq = ? WHERE auction_id = ?", [seq, id])
            return .compacted(removed: removed)
        }
    }

    public func lotReport(_ query: ArchiveQuery) async throws(StorageError) -> [LotReportRow] {
        let group: String
        switch query.grouping {
        case .none: group = "NULL"
        case .sale: group = "sale_id"
        case .seller: group = "seller_id"
        case .month: group = "strftime('%Y-%m', ended_at / 1000, 'unixepoch')"
        }
        let (filter, binds) = Self.filter(query)
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT \(group) AS grp, currency, count(*) AS lots,
                    count(*) FILTER (WHERE result = 'sold') AS sold,
                    count(*) FILTER (WHERE result = 'unsold') AS unsold,
                    count(*) FILTER (WHERE result = 'cancelled') AS cancelled,
                    coalesce(sum(hammer) FILTER (WHERE result = 'sold'), 0) AS hammer_total,
                    avg(CAST(hammer AS REAL) / starting_price) FILTER (WHERE result = 'sold') AS over_start,
                    avg(CAST(hammer AS REAL) / reserve_price) FILTER (WHERE result = 'sold' AND reserve_price > 0)
                        AS over_reserve,
                    avg(bids) AS bids, avg(bidders) AS bidders, avg(extensions) AS extensions
                FROM auction_archive WHERE \(filter)
                GROUP BY grp, currency ORDER BY grp NULLS FIRST, currency
                """, binds)
        }
        return try rows.map { (row: SQLiteRow) throws(StorageError) -> LotReportRow in
            guard let currency = row.column("currency")?.string, let lots = row.column("lots")?.integer,
                let sold = row.column("sold")?.integer, let unsold = row.column("unsold")?.integer,
                let cancelled = row.column("cancelled")?.integer,
                let hammerTotal = row.column("hammer_total")?.integer,
                let bids = row.column("bids")?.double, let bidders = row.column("bidders")?.double,
                let extensions = row.column("extensions")?.double
            else { throw .unavailable("malformed lot report row") }
            return LotReportRow(
                group: row.column("grp")?.string, currency: currency, lots: lots, sold: sold, unsold: unsold,
                cancelled: cancelled, hammerTotal: Int64(hammerTotal),
                hammerOverStart: row.column("over_start")?.double,
                hammerOverReserve: row.column("over_reserve")?.double, bidsPerLot: bids, biddersPerLot: bidders,
                extensionsPerLot: extensions)
        }
    }

    public func bidTiming(_ query: ArchiveQuery) async throws(StorageError) -> [BidTimingRow] {
        let windows = BidTimingRow.windows
        let counts = windows.enumerated().map { index, window in
            "count(*) FILTER (WHERE before >= \(window.0 * 1_000)"
                + (window.1.map { " AND before < \($0 * 1_000)" } ?? "") + ") AS w\(index)"
        }.joined(separator: ", ")
        let (filter, binds) = Self.filter(query, table: "a.")
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT \(counts) FROM (
                    SELECT a.ended_at - json_extract(b.value, '$.at') AS before
                    FROM auction_archive a, json_each(a.document, '$.bids') b
                    WHERE \(filter)
                )
                """, binds)
        }
        return windows.enumerated().map { index, window in
            BidTimingRow(
                fromSeconds: window.0, toSeconds: window.1, bids: rows.first?.column("w\(index)")?.integer ?? 0)
        }
    }

    public func archivedRecords(_ query: ArchiveQuery, after: (Timestamp, AuctionID)?, limit: Int)
        async throws(StorageError) -> [AuctionRecord]
    {
        let (filter, binds) = Self.filter(query)
        let rows: [SQLiteRow] = try await exclusive {
            try await connection.query(
                """
                SELECT auction_id, document FROM auction_archive
                WHERE (ended_at, auction_id) > (?, ?) AND \(filter)
                ORDER BY ended_at, auction_id LIMIT ?
                """,
                [
                    .integer(Int(after?.0.millisecondsSinceEpoch ?? Int64.min)), .text(after?.1.rawValue ?? ""),
                ] + binds + [.integer(max(0, limit))])
        }
        var records: [AuctionRecord] = []
        records.reserveCapacity(rows.count)
        for row in rows {
            guard let id = row.column("auction_id")?.string, let text = row.column("document")?.string else {
                throw .unavailable("malformed archive row")
            }
            records.append(try ArchiveCodec.decode(text, auction: id))
        }
        return records
    }
}
