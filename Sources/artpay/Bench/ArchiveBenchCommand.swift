import ArgumentParser
import AuctionCore
import AuctionRuntime
import ClusterCore
import Foundation
import Logging
import Node
import PostgresNIO
import Storage

/// `artpay bench archive`: the archive and its analytics at the size production holds — seeds
/// `--lots` finished lots (records as the archiver writes them, from a seeded generator) into a
/// fresh PostgreSQL database, then times every analytics query, a record lookup and the export.
struct ArchiveBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Archive and analytics at scale: seed N archived lots, time the reports and the export.",
        discussion: """
            Creates a database, seeds --lots records (about --bids bids each, over --sales sales and \
            --sellers sellers, ending over the last --days days; a third with a reserve at twice the start), with --writers \
            concurrent writers, then runs each query --repeat times and reports the median and the \
            slowest, the archive's size on disk, and the export's rate. The database is dropped at the end.
            """)

    @OptionGroup var postgres: PostgresOptions
    @Option(help: "Archived lots to seed.") var lots = 100_000
    @Option(help: "Mean bids per lot.") var bids = 8
    @Option(help: "Sales the lots belong to.") var sales = 200
    @Option(help: "Sellers.") var sellers = 500
    @Option(help: "Days the lots' ends spread over.") var days = 365
    @Option(help: "Concurrent writers while seeding.") var writers = 8
    @Option(help: "Runs of each query.") var `repeat` = 5
    @Option(help: "Also write the report as Markdown to this file.") var markdown: String?
    @Flag(help: "Also write each lot's log and measure a read model's memory with and without the archive.")
    var memory = false

    func validate() throws {
        guard lots > 0, bids >= 0, sales > 0, sellers > 0, days > 0, writers > 0, `repeat` > 0 else {
            throw ValidationError("every count must be positive")
        }
    }

    func run() async throws {
        let report = try await postgres.withFreshDatabase(prefix: "bench_archive_", maximumConnections: writers) {
            client in
            var logger = Logger(label: "bench.archive")
            logger.logLevel = .warning
            let store = PostgresEventStore(client: client, timeout: .seconds(120), logger: logger)
            try await store.migrate()
            return try await measure(store, client: client)
        }
        print(report)
        if let markdown { try report.write(toFile: markdown, atomically: true, encoding: .utf8) }
    }

    private func measure(_ store: PostgresEventStore, client: PostgresClient) async throws -> String {
        let end = Timestamp(millisecondsSinceEpoch: 1_795_000_000_000)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var random = SeededRandom(seed: UInt64(writer) &+ 20_261_127)
                    for index in stride(from: writer, to: lots, by: writers) {
                        let record = Self.record(index, random: &random, end: end, settings: self)
                        _ = try await store.archive(record, at: end)
                    }
                }
            }
            try await group.waitForAll()
        }
        let seeding = ContinuousClock.now - started
        var memoryLines: [String] = []
        if memory { memoryLines = try await measureMemory(store, client: client, end: end) }
        var lines = [
            "## Archive and analytics: \(lots) archived lots", "",
            "`artpay bench archive --lots \(lots) --bids \(bids) --sales \(sales) --sellers \(sellers)` "
                + "(PostgreSQL, \(writers) writers):", "",
            "- seeded in \(Self.seconds(seeding)) s (\(Int(Double(lots) / Self.double(seeding))) records/s)",
        ]
        let size = try await client.query("SELECT pg_total_relation_size('auction_archive')::bigint")
        for try await bytes in size.decode(Int64.self) {
            lines.append("- the archive on disk: \(bytes / 1_048_576) MiB, indexes included")
        }
        lines += memoryLines
        lines += ["", "| query | median | slowest | rows |", "| --- | ---: | ---: | ---: |"]
        let month = ArchiveQuery(
            from: end.advanced(by: .seconds(-30 * 86_400)), to: end, grouping: .none)
        let queries: [(String, ArchiveQuery)] = [
            ("lots, everything", ArchiveQuery()),
            ("lots by sale", ArchiveQuery(grouping: .sale)),
            ("lots by seller", ArchiveQuery(grouping: .seller)),
            ("lots by month", ArchiveQuery(grouping: .month)),
            ("lots of one seller, by month", ArchiveQuery(seller: UserID(rawValue: "seller-7")!, grouping: .month)),
            ("lots of one sale", ArchiveQuery(sale: SaleID(rawValue: "sale-7")!)),
            ("lots of the last 30 days", month),
        ]
        for (label, query) in queries {
            var rows = 0
            let (median, slowest) = try await time {
                rows = try await store.lotReport(query).count
            }
            lines.append("| \(label) | \(median) ms | \(slowest) ms | \(rows) |")
        }
        for (label, query) in [
            ("bid timing, everything", ArchiveQuery()),
            ("bid timing, one sale", ArchiveQuery(sale: SaleID(rawValue: "sale-7")!)),
            ("bid timing, last 30 days", month),
        ] {
            var counted = 0
            let (median, slowest) = try await time {
                counted = try await store.bidTiming(query).map(\.bids).reduce(0, +)
            }
            lines.append("| \(label) | \(median) ms | \(slowest) ms | \(counted) bids |")
        }
        var found = 0
        let (lookup, slowestLookup) = try await time {
            found = 0
            for index in stride(from: 0, to: lots, by: max(1, lots / 100)) {
                if try await store.archivedAuction(AuctionID(rawValue: Self.id(index))!) != nil { found += 1 }
            }
        }
        lines.append("| 100 record lookups by id | \(lookup) ms | \(slowestLookup) ms | \(found) |")
        let exportStarted = ContinuousClock.now
        var exported = 0
        var after: (Timestamp, AuctionID)?
        while true {
            let page = try await store.archivedRecords(ArchiveQuery(), after: after, limit: 500)
            exported += page.count
            guard page.count == 500, let last = page.last else { break }
            after = (last.endedAt, AuctionID(rawValue: last.auctionId)!)
        }
        let export = ContinuousClock.now - exportStarted
        lines.append(
            "| export, every record (pages of 500, decoded) | \(Self.milliseconds(export)) ms | — | \(exported) |")
        if memory { lines += [""] + (try await measureCompaction(store, client: client, end: end)) }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes every lot's log (created, its bids, closed unsold — the archive's records of these
    /// logs replace the generated ones), then starts two read models on the store, as a node does,
    /// and measures what each adds to this process's resident memory: one with the archive (the
    /// lots ended a year ago at most; retention a week), then one without.
    private func measureMemory(_ store: PostgresEventStore, client: PostgresClient, end: Timestamp) async throws
        -> [String]
    {
        let logsStarted = ContinuousClock.now
        let node = NodeID(rawValue: "bench-archive")!
        var epochs: [ShardID: Epoch] = [:]
        for shard in 0..<ShardMap().shardCount {
            epochs[ShardID(Int32(shard))] = try await store.acquire(shard: ShardID(Int32(shard)), node: node).epoch
        }
        let epochsByShard = epochs
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var batch: [AppendEntry] = []
                    for index in stride(from: writer, to: lots, by: writers) {
                        let id = AuctionID(rawValue: Self.id(index))!
                        let events = Self.unsoldLog(id, index: index, end: end, days: days)
                        let shard = ShardMap().shard(of: id)
                        batch.append(
                            AppendEntry(
                                auction: id, shard: shard, epoch: epochsByShard[shard]!, firstSeq: 1, events: events))
                        if let record = AuctionRecord.finished(id, events: events) {
                            _ = try await store.archive(record, at: end)
                        }
                        if batch.count == 100 {
                            try await store.append(AppendBatch(entries: batch))
                            batch = []
                        }
                    }
                    if !batch.isEmpty { try await store.append(AppendBatch(entries: batch)) }
                }
            }
            try await group.waitForAll()
        }
        var lines = ["- wrote \(lots) logs and their records in \(Self.seconds(ContinuousClock.now - logsStarted)) s"]
        let clock = ManualClock(now: end)
        for (label, archive) in [("with the archive", store as (any ArchiveStore)?), ("without the archive", nil)] {
            let before = ProcessMemory.residentMiB(getpid())
            let started = ContinuousClock.now
            let model = AuctionReadModel(store: store, clock: clock, archive: archive)
            await model.catchUp()
            let after = ProcessMemory.residentMiB(getpid())
            lines.append(
                "- a read model starting on \(lots) archived lots \(label): \(model.snapshot.count) lots kept, "
                    + String(format: "%.0f MiB", after - before) + " more resident memory, caught up in "
                    + "\(Self.seconds(ContinuousClock.now - started)) s")
        }
        return lines
    }

    /// What the archiver does with every lot, after the queries above (which ran on the generated
    /// records): the lot's record folded from its log replaces the generated stand-in, then its live
    /// log is compacted to its snapshot and last event (`ArchiveStore.compact`), `writers` lots at
    /// a time. Reports the live tables and the archive before and after.
    private func measureCompaction(_ store: PostgresEventStore, client: PostgresClient, end: Timestamp)
        async throws -> [String]
    {
        func tables() async throws -> String {
            let rows = try await client.query(
                """
                SELECT (SELECT count(*) FROM auction_events)::bigint,
                    pg_total_relation_size('auction_events')::bigint,
                    pg_total_relation_size('auction_snapshots')::bigint,
                    pg_total_relation_size('auction_archive')::bigint
                """)
            for try await (events, eventBytes, snapshotBytes, archiveBytes) in rows.decode(
                (Int64, Int64, Int64, Int64).self)
            {
                return "\(events) events in \(eventBytes / 1_048_576) MiB, snapshots \(snapshotBytes / 1_048_576) MiB, "
                    + "archive \(archiveBytes / 1_048_576) MiB"
            }
            return "?"
        }
        _ = try await client.query("DELETE FROM auction_archive")
        _ = try await client.query("VACUUM FULL auction_archive")
        let before = try await tables()
        let started = ContinuousClock.now
        let totals = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var (compacted, removed) = (0, 0)
                    for index in stride(from: writer, to: lots, by: writers) {
                        let id = AuctionID(rawValue: Self.id(index))!
                        let log = try await store.events(of: id, after: 0, limit: Int.max).map(\.event)
                        guard let record = AuctionRecord.finished(id, events: log) else { continue }
                        _ = try await store.archive(record, at: end)
                        let live = try await store.load(id).restore(id)
                        if case .compacted(let count) = try await store.compact(id, keeping: live) {
                            compacted += 1
                            removed += count
                        }
                    }
                    return (compacted, removed)
                }
            }
            return try await group.reduce(into: (0, 0)) { $0 = ($0.0 + $1.0, $0.1 + $1.1) }
        }
        let took = ContinuousClock.now - started
        let afterDeletes = try await tables()
        _ = try await client.query("VACUUM FULL auction_events")
        _ = try await client.query("VACUUM FULL auction_snapshots")
        let afterVacuum = try await tables()
        return [
            "Compaction (each lot archived from its log, then compacted, as the archiver does; \(writers) at a time):",
            "",
            "- before: \(before)",
            "- archived and compacted \(totals.0) lots (\(totals.1) events removed) in \(Self.seconds(took)) s, "
                + "\(Int(Double(totals.0) / Self.double(took))) lots/s",
            "- after: \(afterDeletes); after VACUUM FULL: \(afterVacuum)",
        ]
    }

    /// A finished lot's log: created, up to 8 bids, closed unsold (its reserve was not met), all
    /// over before `end`.
    static func unsoldLog(_ id: AuctionID, index: Int, end: Timestamp, days: Int) -> [AuctionEvent] {
        var random = SeededRandom(seed: UInt64(index) &+ 7)
        let closes = end.advanced(by: .milliseconds(-8 * 86_400_000 - Int64(random.next() % UInt64(days * 86_400_000))))
        let opens = closes.advanced(by: .seconds(-86_400))
        let terms = AuctionTerms(
            auctionId: id, sellerId: UserID(rawValue: "seller-\(index % 500)")!, title: "Lot \(index)",
            startingPrice: Money(minorUnits: 1_000, currency: .eur),
            reservePrice: Money(minorUnits: 1_000_000, currency: .eur), opensAt: opens, closesAt: closes,
            extensionWindow: .zero)
        var auction = Auction(id: id)
        var events: [AuctionEvent] = []
        func take(_ command: AuctionCommand, at now: Timestamp) {
            guard case .accept(let decided) = auction.decide(command, now: now),
                (try? auction.apply(contentsOf: decided)) != nil
            else { return }
            events += decided
        }
        take(.create(terms), at: opens)
        for bid in 0..<Int(random.next() % 9) {
            let bidder = UserID(rawValue: "u-\(random.next() % 12)")!
            take(
                .placeBid(
                    PlaceBid(
                        bidId: BidID(rawValue: "b-\(index)-\(bid)")!, bidderId: bidder,
                        maximum: Money(minorUnits: 2_000 + Int64(bid) * 500, currency: .eur))),
                at: opens.advanced(by: .seconds(Int64(60 * (bid + 1)))))
        }
        take(.close, at: closes)
        return events
    }

    /// Runs `work` `repeat` times: the median and the slowest, in ms.
    private func time(_ work: () async throws -> Void) async throws -> (String, String) {
        var runs: [Duration] = []
        for _ in 0..<`repeat` {
            let started = ContinuousClock.now
            try await work()
            runs.append(ContinuousClock.now - started)
        }
        runs.sort()
        return (Self.milliseconds(runs[runs.count / 2]), Self.milliseconds(runs[runs.count - 1]))
    }

    static func id(_ index: Int) -> String { "arch-\(index)" }

    /// Lot `index`, drawn from `random`: ends spread over the days before `end`, three in four
    /// sold, bids crowding towards the end (the sniping the timing report shows).
    static func record(_ index: Int, random: inout SeededRandom, end: Timestamp, settings: ArchiveBenchCommand)
        -> AuctionRecord
    {
        let endedAt = end.advanced(by: .milliseconds(-Int64(random.next() % UInt64(settings.days * 86_400_000))))
        let starting = Int64(1_000 + random.next() % 100) * 100
        let reserve: Int64? = random.next() % 3 == 0 ? starting * 2 : nil
        let count = settings.bids == 0 ? 0 : Int(random.next() % UInt64(2 * settings.bids + 1))
        var price = starting
        var bids: [AuctionRecord.Bid] = []
        let bidders = Int(random.next() % 12) + 1
        for bid in 0..<count {
            price += starting / 10
            let before = Int64(random.next() % 3_600_000) >> (random.next() % 8)
            let bidder = Int(random.next() % UInt64(bidders))
            bids.append(
                .init(
                    bidId: "b-\(index)-\(bid)", bidderId: "u-\(bidder)", paddle: 101 + bidder, price: price,
                    at: endedAt.advanced(by: .milliseconds(-before)), boughtNow: false))
        }
        bids.sort { $0.at < $1.at }
        let sold = !bids.isEmpty && (reserve.map { price >= $0 } ?? true)
        let extensions = bids.filter { endedAt.millisecondsSinceEpoch - $0.at.millisecondsSinceEpoch < 30_000 }.count
        return AuctionRecord(
            auctionId: id(index), seq: Int64(2 + bids.count + (sold ? 8 : 0)),
            saleId: "sale-\(index % settings.sales)", sellerId: "seller-\(index % settings.sellers)",
            title: "Lot \(index)", currency: index % 10 == 0 ? "USD" : "EUR", startingPrice: starting,
            reservePrice: reserve, buyNowPrice: nil, opensAt: endedAt.advanced(by: .seconds(-7 * 86_400)),
            closesAt: endedAt, endedAt: endedAt, result: sold ? .sold : .unsold,
            reason: sold ? nil : (bids.isEmpty ? "no_bids" : "reserve_not_met"), hammer: sold ? price : nil,
            winnerId: sold ? bids.last?.bidderId : nil, winnerPaddle: sold ? bids.last?.paddle : nil, bids: bids,
            extensions: (0..<extensions).map { .init(endsAt: endedAt, byBidId: "x\($0)") },
            settlement: sold ? "settled" : nil, captured: sold ? price : nil, refunded: nil)
    }

    static func double(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func seconds(_ duration: Duration) -> String { String(format: "%.1f", double(duration)) }
    static func milliseconds(_ duration: Duration) -> String { String(format: "%.1f", double(duration) * 1_000) }
}
