import ArgumentParser
import AuctionCore
import AuctionRuntime
import ClusterCore
import Foundation
import Logging
import Node
import PostgresNIO
import Storage

/// `artpay bench catchup`: what a node restart costs its read model at the size production holds —
/// seeds `--auctions` running lots with their bids into a fresh PostgreSQL database, then starts
/// read models on it as a restarted node does and times their first catch-up, the resident
/// memory it adds, and checks every lot arrived whole (seq and bids).
struct CatchUpBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catchup",
        abstract: "A restarted node's read-model catch-up over N running lots: time, memory, completeness.",
        discussion: """
            Creates a database, writes --auctions running lots (created, then up to twice --bids bids \
            each from a seeded generator) with --writers concurrent writers, then runs --repeat read \
            models' first catch-up one after another and reports each one's time and added resident \
            memory. Every run must see every lot at its last seq with every bid, or the command fails. \
            The database is dropped at the end.
            """)

    @OptionGroup var postgres: PostgresOptions
    @Option(help: "Running lots to seed.") var auctions = 100_000
    @Option(help: "Mean bids per lot.") var bids = 8
    @Option(help: "Concurrent writers while seeding.") var writers = 8
    @Option(help: "Read models started one after another.") var `repeat` = 2
    @Option(help: "Connections the read models' store may use (a node's default is 16).")
    var connections = 16
    @Option(help: "Also write the report as Markdown to this file.") var markdown: String?

    func validate() throws {
        guard auctions > 0, bids >= 0, writers > 0, `repeat` > 0, connections > 0 else {
            throw ValidationError("every count must be positive")
        }
    }

    func run() async throws {
        let report = try await postgres.withFreshDatabase(
            prefix: "bench_catchup_", maximumConnections: max(writers, connections)
        ) { client in
            var logger = Logger(label: "bench.catchup")
            logger.logLevel = .warning
            let store = PostgresEventStore(client: client, timeout: .seconds(120), logger: logger)
            try await store.migrate()
            return try await measure(store)
        }
        print(report)
        if let markdown { try report.write(toFile: markdown, atomically: true, encoding: .utf8) }
    }

    private func measure(_ store: PostgresEventStore) async throws -> String {
        let now = Timestamp(millisecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1_000))
        let seeded = ContinuousClock.now
        let expected = try await seed(store, now: now)
        var lines = [
            "# Read-model catch-up after a restart, \(auctions) running lots",
            "",
            "- wrote \(auctions) logs (\(expected.events) events, \(expected.bids) bids) in "
                + "\(ArchiveBenchCommand.seconds(ContinuousClock.now - seeded)) s",
        ]
        for attempt in 1...`repeat` {
            let before = ProcessMemory.residentMiB(getpid())
            let started = ContinuousClock.now
            let model = AuctionReadModel(store: store, clock: ManualClock(now: now))
            await model.catchUp()
            let took = ContinuousClock.now - started
            let after = ProcessMemory.residentMiB(getpid())
            let snapshot = model.snapshot
            var lots = 0
            var bidsSeen = 0
            var behind: [String] = []
            for index in 0..<auctions {
                guard let summary = snapshot.summary(of: Self.id(index)) else {
                    behind.append("\(Self.id(index)) missing")
                    continue
                }
                lots += 1
                bidsSeen += summary.bidCount
                if summary.seq != expected.seqs[index] {
                    behind.append("\(Self.id(index)) at seq \(summary.seq), log \(expected.seqs[index])")
                }
            }
            guard behind.isEmpty, bidsSeen == expected.bids else {
                throw ValidationError(
                    "read model \(attempt) is incomplete: \(lots) lots, \(bidsSeen) of \(expected.bids) bids; "
                        + behind.prefix(5).joined(separator: "; "))
            }
            lines.append(
                "- read model \(attempt): caught up on \(lots) lots (\(bidsSeen) bids) in "
                    + "\(ArchiveBenchCommand.seconds(took)) s, "
                    + String(format: "%.0f MiB", after - before) + " more resident memory")
        }
        return lines.joined(separator: "\n")
    }

    /// Writes every lot's log; the seq each ends at, and the events and bids written.
    private func seed(_ store: PostgresEventStore, now: Timestamp) async throws -> (
        seqs: [Int64], events: Int, bids: Int
    ) {
        let node = NodeID(rawValue: "bench-catchup")!
        var epochs: [ShardID: Epoch] = [:]
        for shard in 0..<ShardMap().shardCount {
            epochs[ShardID(Int32(shard))] = try await store.acquire(shard: ShardID(Int32(shard)), node: node).epoch
        }
        let epochsByShard = epochs
        let (auctions, bids, writers) = (self.auctions, self.bids, self.writers)
        let written = try await withThrowingTaskGroup(of: [(Int, Int64, Int)].self) { group in
            for writer in 0..<writers {
                group.addTask {
                    var batch: [AppendEntry] = []
                    var written: [(Int, Int64, Int)] = []
                    for index in stride(from: writer, to: auctions, by: writers) {
                        let id = Self.id(index)
                        let (events, bidCount) = Self.runningLog(id, index: index, bids: bids, now: now)
                        let shard = ShardMap().shard(of: id)
                        batch.append(
                            AppendEntry(
                                auction: id, shard: shard, epoch: epochsByShard[shard]!, firstSeq: 1, events: events))
                        written.append((index, Int64(events.count), bidCount))
                        if batch.count == 100 {
                            try await store.append(AppendBatch(entries: batch))
                            batch = []
                        }
                    }
                    if !batch.isEmpty { try await store.append(AppendBatch(entries: batch)) }
                    return written
                }
            }
            var all: [(Int, Int64, Int)] = []
            for try await part in group { all += part }
            return all
        }
        var seqs = [Int64](repeating: 0, count: auctions)
        var events = 0
        var bidCount = 0
        for (index, seq, placed) in written {
            seqs[index] = seq
            events += Int(seq)
            bidCount += placed
        }
        return (seqs, events, bidCount)
    }

    static func id(_ index: Int) -> AuctionID { AuctionID(rawValue: "run-\(index)")! }

    /// A running lot's log: created a day before `now`, closing in a month, then 0 to `2 × bids`
    /// bids from a dozen bidders, every maximum above the last; and the bids its summary counts.
    static func runningLog(_ id: AuctionID, index: Int, bids: Int, now: Timestamp) -> ([AuctionEvent], Int) {
        var random = SeededRandom(seed: UInt64(index) &+ 11)
        let opens = now.advanced(by: .seconds(-86_400))
        let terms = AuctionTerms(
            auctionId: id, sellerId: UserID(rawValue: "seller-\(index % 500)")!, title: "Lot \(index)",
            startingPrice: Money(minorUnits: 1_000, currency: .eur), reservePrice: nil, opensAt: opens,
            closesAt: now.advanced(by: .seconds(30 * 86_400)), extensionWindow: .zero)
        var auction = Auction(id: id)
        var events: [AuctionEvent] = []
        func take(_ command: AuctionCommand, at time: Timestamp) {
            guard case .accept(let decided) = auction.decide(command, now: time),
                (try? auction.apply(contentsOf: decided)) != nil
            else { return }
            events += decided
        }
        take(.create(terms), at: opens)
        let count = bids == 0 ? 0 : Int(random.next() % UInt64(2 * bids + 1))
        for bid in 0..<count {
            take(
                .placeBid(
                    PlaceBid(
                        bidId: BidID(rawValue: "b-\(index)-\(bid)")!,
                        bidderId: UserID(rawValue: "u-\(random.next() % 12)")!,
                        maximum: Money(minorUnits: 2_000 + Int64(bid) * 500, currency: .eur))),
                at: opens.advanced(by: .seconds(Int64(60 * (bid + 1)))))
        }
        return (events, auction.state?.summary(auction: id, seq: auction.seq).bidCount ?? 0)
    }
}
