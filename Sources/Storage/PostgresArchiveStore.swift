public import AuctionCore
import PostgresNIO

extension PostgresEventStore: ArchiveStore {
    public func archive(_ record: AuctionRecord, at time: Timestamp) async throws(StorageError) -> Bool {
        let logger = logger
        let document = ArchiveCodec.encode(record)
        return try await guardedQuery { connection in
            let rows = try await connection.query(
                """
                INSERT INTO auction_archive AS cur (auction_id, seq, sale_id, seller_id, currency, result,
                    starting_price, reserve_price, hammer, bids, bidders, extensions, ended_at, archived_at, document)
                VALUES (\(record.auctionId), \(record.seq), \(record.saleId), \(record.sellerId), \(record.currency),
                    \(record.result.rawValue), \(record.startingPrice), \(record.reservePrice), \(record.hammer),
                    \(record.bids.count), \(record.bidderCount), \(record.extensions.count),
                    \(record.endedAt.millisecondsSinceEpoch), \(time.millisecondsSinceEpoch), \(document)::jsonb)
                ON CONFLICT (auction_id) DO UPDATE SET seq = excluded.seq, sale_id = excluded.sale_id,
                    seller_id = excluded.seller_id, currency = excluded.currency, result = excluded.result,
                    starting_price = excluded.starting_price, reserve_price = excluded.reserve_price,
                    hammer = excluded.hammer, bids = excluded.bids, bidders = excluded.bidders,
                    extensions = excluded.extensions, ended_at = excluded.ended_at,
                    archived_at = excluded.archived_at, document = excluded.document
                WHERE cur.seq < excluded.seq
                RETURNING auction_id
                """, logger: logger)
            for try await _ in rows { return true }
            return false
        }
    }

    public func archivedAuction(_ id: AuctionID) async throws(StorageError) -> AuctionRecord? {
        let logger = logger
        let text: String? = try await guardedQuery { connection in
            let rows = try await connection.query(
                "SELECT document::text FROM auction_archive WHERE auction_id = \(id.rawValue)", logger: logger)
            for try await (document) in rows.decode(String.self) { return document }
            return nil
        }
        return try text.map { (text: String) throws(StorageError) in try ArchiveCodec.decode(text, auction: id.rawValue)
        }
    }

    public func archivedMarks(of ids: [AuctionID]) async throws(StorageError) -> [AuctionID: ArchivedMark] {
        guard !ids.isEmpty else { return [:] }
        let logger = logger
        let names = ids.map(\.rawValue)
        let rows: [(String, Int64, Int64)] = try await guardedQuery { connection in
            var found: [(String, Int64, Int64)] = []
            let result = try await connection.query(
                "SELECT auction_id, seq, ended_at FROM auction_archive WHERE auction_id = ANY(\(names))",
                logger: logger)
            for try await row in result.decode((String, Int64, Int64).self) { found.append(row) }
            return found
        }
        var marks: [AuctionID: ArchivedMark] = [:]
        for (id, seq, endedAt) in rows {
            if let id = AuctionID(rawValue: id) {
                marks[id] = ArchivedMark(seq: seq, endedAt: Timestamp(millisecondsSinceEpoch: endedAt))
            }
        }
        return marks
    }

    public func compactionCandidates(archivedBefore cutoff: Timestamp, limit: Int) async throws(StorageError)
        -> [AuctionID]
    {
        let logger = logger
        let names: [String] = try await guardedQuery { connection in
            var found: [String] = []
            let rows = try await connection.query(
                """
                SELECT auction_id FROM auction_archive
                WHERE archived_at < \(cutoff.millisecondsSinceEpoch) AND compacted_seq IS DISTINCT FROM seq
                ORDER BY archived_at, auction_id LIMIT \(Int64(max(0, limit)))
                """, logger: logger)
            for try await (name) in rows.decode(String.self) { found.append(name) }
            return found
        }
        return names.compactMap(AuctionID.init(rawValue:))
    }

    public func compact(_ auction: AuctionID, keeping snapshot: Auction) async throws(StorageError)
        -> CompactionOutcome
    {
        let logger = logger
        let state = EventCodec.encodeSnapshot(snapshot)
        let (outcome, removed): (String, Int64) = try await guardedQuery { connection in
            let rows = try await connection.query(
                "SELECT o_outcome, o_removed FROM artpay_compact(\(auction.rawValue), \(snapshot.seq), \(state))",
                logger: logger)
            for try await row in rows.decode((String, Int64).self) { return row }
            return ("archive_behind", 0)
        }
        switch outcome {
        case "compacted": return .compacted(removed: Int(removed))
        case "webhooks_behind": return .webhooksBehind
        default: return .archiveBehind
        }
    }

    public func lotReport(_ query: ArchiveQuery) async throws(StorageError) -> [LotReportRow] {
        let group: String
        switch query.grouping {
        case .none: group = "NULL::text"
        case .sale: group = "sale_id"
        case .seller: group = "seller_id"
        case .month: group = "to_char(to_timestamp(ended_at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM')"
        }
        let sql: PostgresQuery = """
            SELECT \(unescaped: group) AS grp, currency, count(*), count(*) FILTER (WHERE result = 'sold'),
                count(*) FILTER (WHERE result = 'unsold'), count(*) FILTER (WHERE result = 'cancelled'),
                coalesce(sum(hammer) FILTER (WHERE result = 'sold'), 0)::bigint,
                avg(hammer::float8 / starting_price) FILTER (WHERE result = 'sold'),
                avg(hammer::float8 / reserve_price) FILTER (WHERE result = 'sold' AND reserve_price > 0),
                avg(bids)::float8, avg(bidders)::float8, avg(extensions)::float8
            FROM auction_archive WHERE \(filterOf: query)
            GROUP BY grp, currency ORDER BY grp NULLS FIRST, currency
            """
        typealias Row = (String?, String, Int, Int, Int, Int, Int64, Double?, Double?, Double, Double, Double)
        let logger = logger
        let rows: [Row] = try await guardedQuery { [sql] connection in
            var rows: [Row] = []
            for try await row in try await connection.query(sql, logger: logger).decode(Row.self) { rows.append(row) }
            return rows
        }
        return rows.map {
            LotReportRow(
                group: $0.0, currency: $0.1, lots: $0.2, sold: $0.3, unsold: $0.4, cancelled: $0.5, hammerTotal: $0.6,
                hammerOverStart: $0.7, hammerOverReserve: $0.8, bidsPerLot: $0.9, biddersPerLot: $0.10,
                extensionsPerLot: $0.11)
        }
    }

    public func bidTiming(_ query: ArchiveQuery) async throws(StorageError) -> [BidTimingRow] {
        let windows = BidTimingRow.windows
        let counts = windows.map { window in
            "count(*) FILTER (WHERE before >= \(window.0 * 1_000)"
                + (window.1.map { " AND before < \($0 * 1_000)" } ?? "") + ")"
        }.joined(separator: ", ")
        let sql: PostgresQuery = """
            SELECT \(unescaped: counts) FROM (
                SELECT a.ended_at - (b ->> 'at')::bigint AS before
                FROM auction_archive a CROSS JOIN LATERAL jsonb_array_elements(a.document -> 'bids') b
                WHERE \(filterOf: query, table: "a.")
            ) timed
            """
        let logger = logger
        let values: [Int] = try await guardedQuery { [sql] connection in
            let rows = try await connection.query(sql, logger: logger)
            for try await row in rows {
                let cells = row.makeRandomAccess()
                return try (0..<windows.count).map { try cells[$0].decode(Int.self, context: .default) }
            }
            return []
        }
        return zip(windows, values.count == windows.count ? values : Array(repeating: 0, count: windows.count)).map {
            BidTimingRow(fromSeconds: $0.0.0, toSeconds: $0.0.1, bids: $0.1)
        }
    }

    public func archivedRecords(_ query: ArchiveQuery, after: (Timestamp, AuctionID)?, limit: Int)
        async throws(StorageError) -> [AuctionRecord]
    {
        let sql: PostgresQuery = """
            SELECT auction_id, document::text FROM auction_archive
            WHERE (ended_at, auction_id) > (\(after?.0.millisecondsSinceEpoch ?? Int64.min), \(after?.1.rawValue ?? ""))
              AND \(filterOf: query)
            ORDER BY ended_at, auction_id LIMIT \(max(0, limit))
            """
        let logger = logger
        let rows: [(String, String)] = try await guardedQuery { [sql] connection in
            var rows: [(String, String)] = []
            for try await row in try await connection.query(sql, logger: logger).decode((String, String).self) {
                rows.append(row)
            }
            return rows
        }
        var records: [AuctionRecord] = []
        records.reserveCapacity(rows.count)
        for (id, text) in rows { records.append(try ArchiveCodec.decode(text, auction: id)) }
        return records
    }
}

extension PostgresQuery.StringInterpolation {
    /// The archive rows `query` is about: its period, sale and seller, with bound values (`table`:
    /// the archive's alias and a dot, in a join).
    fileprivate mutating func appendInterpolation(filterOf query: ArchiveQuery, table: String = "") {
        let (from, to) = (query.from?.millisecondsSinceEpoch, query.to?.millisecondsSinceEpoch)
        let (sale, seller) = (query.sale?.rawValue, query.seller?.rawValue)
        appendLiteral("(")
        appendInterpolation(from)
        appendLiteral("::bigint IS NULL OR \(table)ended_at >= ")
        appendInterpolation(from)
        appendLiteral(") AND (")
        appendInterpolation(to)
        appendLiteral("::bigint IS NULL OR \(table)ended_at < ")
        appendInterpolation(to)
        appendLiteral(") AND (")
        appendInterpolation(sale)
        appendLiteral("::text IS NULL OR \(table)sale_id = ")
        appendInterpolation(sale)
        appendLiteral(") AND (")
        appendInterpolation(seller)
        appendLiteral("::text IS NULL OR \(table)seller_id = ")
        appendInterpolation(seller)
        appendLiteral(")")
    }
}
