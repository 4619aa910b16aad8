import ArgumentParser
import AuctionCore
import AuctionRuntime
import Foundation
import Logging
import PostgresNIO
import Storage

/// `artpay bench`: the benchmarks. Without a subcommand, `artpay bench in-process`; `artpay bench
/// http` measures the same bids end to end over HTTP. (A container with a default subcommand, so
/// that each subcommand owns its options: a parent's options would take `--seconds` from them.)
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the engine (in-process, the default) or bids end to end over HTTP (bench http).",
        discussion: """
            `artpay bench [options]` runs `artpay bench in-process [options]`: decide/apply, the engine's \
            durable bid rate and latency, a row-lock baseline and read-model reads (see `artpay bench \
            in-process --help`). `artpay bench http [options]`: nodes, row-lock and Redis + Lua servers \
            over HTTP under one wrk load (see `artpay bench http --help`).
            """,
        subcommands: [
            InProcessBenchCommand.self, HttpBenchCommand.self, SettleBenchCommand.self, ArchiveBenchCommand.self,
            CatchUpBenchCommand.self,
            BaselineServerCommand.self,
        ],
        defaultSubcommand: InProcessBenchCommand.self)
}

/// `artpay bench in-process` (the default of `artpay bench`): the engine against the design users
/// would otherwise write, on one PostgreSQL, in one run. See docs/benchmarks.md for the figures and
/// how to read them.
struct InProcessBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "in-process",
        abstract: "Measure decide/apply, the engine's durable bid rate and latency, and a row-lock baseline.")

    @OptionGroup var postgres: PostgresOptions

    @Option(help: "Seconds each load test runs.")
    var seconds: Int = 10
    @Option(help: "Concurrent bidders (closed loop: each waits for its reply).")
    var bidders: Int = 64
    @Option(help: "Auctions in the many-auctions tests.")
    var auctions: Int = 1_000
    @Option(help: "Also write the results as Markdown to this file.")
    var markdown: String?

    func validate() throws {
        guard seconds > 0, bidders > 0, auctions > 0 else {
            throw ValidationError("--seconds, --bidders and --auctions must be positive")
        }
    }

    func run() async throws {
        let run = "r" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let duration = Duration.seconds(seconds)
        print("artpay bench: run \(run), \(bidders) bidders, \(seconds) s per load test")

        let pure = PureDecideBench.run(duration: .seconds(min(seconds, 3)))
        print(String(format: "pure decide+apply: %.0f bids/s (single core)", pure))
        let reads = try await ReadModelBench.run(
            auctions: auctions, bidsPerAuction: 50, readers: 4, duration: .seconds(min(seconds, 5)))
        var readLines =
            "\nRead model: \(auctions) auctions with 50 bids each, 4 readers, one writer applying \(reads.bidsApplied) more bids meanwhile:\n\n| leaderboard read | reads | p50 µs | p99 µs | max µs |\n| --- | ---: | ---: | ---: | ---: |\n"
        for result in reads.results {
            readLines +=
                "| \(result.name) | \(result.count) | \(result.latency.valueAtPercentile(50)) | \(result.latency.valueAtPercentile(99)) | \(result.latency.max) |\n"
        }
        print(readLines)

        let results = try await PostgresClient.withRunning(postgres.configuration(maximumConnections: bidders + 8)) {
            client in
            var rows: [(String, LoadResult, String)] = []
            let store = PostgresEventStore(client: client)
            try await store.migrate()
            let server = try await serverDescription(client)
            print("PostgreSQL: \(server)")
            for (label, count) in [("1 hot auction", 1), ("\(auctions) auctions", auctions)] {
                let engine = try await EngineBench.run(
                    store: store, run: "\(run)-e\(count)", auctions: count, bidders: bidders, duration: duration)
                rows.append(("engine, \(label)", engine.result, engine.note))
                print(Self.line("engine, \(label)", engine.result, engine.note))
                let baseline = try await RowLockBaseline.run(
                    client: client, run: "\(run)-b\(count)", auctions: count, bidders: bidders, duration: duration)
                rows.append(("row-lock baseline, \(label)", baseline, ""))
                print(Self.line("row-lock baseline, \(label)", baseline, ""))
            }
            return (rows, server)
        }
        let report =
            Self.markdown(pure: pure, rows: results.0, server: results.1, bidders: bidders, seconds: seconds)
            + readLines
        print("\n" + report)
        if let markdown {
            try report.write(toFile: markdown, atomically: true, encoding: .utf8)
        }
    }

    private func serverDescription(_ client: PostgresClient) async throws -> String {
        var version = "?"
        var commit = "?"
        for try await value in try await client.query("SELECT current_setting('server_version')").decode(String.self) {
            version = value
        }
        for try await value in try await client.query("SELECT current_setting('synchronous_commit')").decode(
            String.self)
        {
            commit = value
        }
        return "\(version), synchronous_commit=\(commit)"
    }

    static func line(_ name: String, _ result: LoadResult, _ note: String) -> String {
        String(
            format: "%@: %.0f accepted bids/s (%.0f requests/s), p50 %.2f ms, p99 %.2f ms, failed %d %@", name,
            result.acceptedPerSecond, result.requestsPerSecond, result.percentileMilliseconds(50),
            result.percentileMilliseconds(99), result.failed, note)
    }

    static func markdown(
        pure: Double, rows: [(String, LoadResult, String)], server: String, bidders: Int, seconds: Int
    ) -> String {
        var text = """
            | measurement | accepted bids/s | requests/s | p50 ms | p99 ms | failed | notes |
            | --- | ---: | ---: | ---: | ---: | ---: | --- |
            | pure decide + apply (1 core, no I/O) | \(Int(pure)) | | | | | |

            """
        for (name, result, note) in rows {
            text += String(
                format: "| %@ | %.0f | %.0f | %.2f | %.2f | %d | %@ |\n", name, result.acceptedPerSecond,
                result.requestsPerSecond, result.percentileMilliseconds(50), result.percentileMilliseconds(99),
                result.failed, note)
        }
        text += "\n\(bidders) closed-loop bidders, \(seconds) s per load test, PostgreSQL \(server).\n"
        return text
    }
}

/// (a) The pure rules: decide and apply bids on in-memory auctions, no I/O.
enum PureDecideBench {
    static func run(duration: Duration) -> Double {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: duration)
        var count = 0
        var round = 0
        let bidders = (0..<8).map { UserID(rawValue: "bidder-\($0)")! }
        let now = Timestamp(millisecondsSinceEpoch: 1_000)
        while clock.now < deadline {
            // A fresh auction every 10,000 bids keeps memory flat.
            round += 1
            let id = AuctionID(rawValue: "pure-\(round)")!
            var auction = Auction(id: id)
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot",
                startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
                closesAt: Timestamp(millisecondsSinceEpoch: Int64.max / 2), extensionWindow: .zero)
            guard case .accept(let created) = auction.decide(.create(terms), now: now) else { fatalError("create") }
            try! auction.apply(contentsOf: created)
            for index in 0..<10_000 {
                let minimum = auction.state!.minimumNextBid.minorUnits
                let bid = PlaceBid(
                    bidId: BidID(rawValue: "b\(index)")!, bidderId: bidders[index % bidders.count],
                    maximum: Money(minorUnits: minimum + Int64(index % 4) * 100, currency: .eur))
                if case .accept(let events) = auction.decide(.placeBid(bid), now: now) {
                    try! auction.apply(contentsOf: events)
                }
                count += 1
            }
        }
        let elapsed = (clock.now - start).components
        return Double(count) / (Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
    }
}

/// (b) The engine: bids through the registry and auction actors, group-committed to PostgreSQL.
enum EngineBench {
    static func run(
        store: PostgresEventStore, run: String, auctions: Int, bidders: Int, duration: Duration
    ) async throws -> (result: LoadResult, note: String) {
        let clock = SystemClock()
        let writer = LogWriter(store: store)
        let registry = AuctionRegistry(
            configuration: .init(node: NodeID(rawValue: "bench-\(run)")!), store: store, writer: writer, clock: clock)
        let ids = (0..<auctions).map { AuctionID(rawValue: "\(run)-a\($0)")! }
        let now = clock.now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    let terms = AuctionTerms(
                        auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Bench lot \(index)",
                        startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
                        closesAt: now.advanced(by: .seconds(86_400)), extensionWindow: .zero)
                    _ = try await registry.submit(.create(terms), to: id).get()
                }
                if index % 64 == 63 { try await group.waitForAll() }
            }
            try await group.waitForAll()
        }
        let (batchesBefore, entriesBefore) = (await writer.committedBatches, await writer.committedEntries)
        let board = PriceBoard(starting: 1_000, spread: bidders, increments: .standard(for: .eur))
        let result = await runLoad(bidders: bidders, duration: duration) { bidder, iteration in
            let auction = auctions == 1 ? 0 : Int.random(in: 0..<auctions)
            let bid = PlaceBid(
                bidId: BidID(rawValue: "\(bidder)-\(iteration)")!, bidderId: UserID(rawValue: "bidder-\(bidder)")!,
                maximum: Money(minorUnits: board.nextMaximum(auction: auction), currency: .eur))
            switch await registry.submit(.placeBid(bid), to: ids[auction]) {
            case .success(let accepted):
                board.learn(auction: auction, minimum: accepted.summary.minimumNextBid.minorUnits)
                return .accepted
            case .failure(.rejected(.belowMinimum(let minimum))):
                board.learn(auction: auction, minimum: minimum.minorUnits)
                return .rejected
            case .failure(.rejected(.maximumNotAboveCurrent(let current))):
                board.learn(auction: auction, minimum: current.minorUnits + 1)
                return .rejected
            case .failure(.rejected):
                return .rejected
            case .failure:
                return .failed
            }
        }
        let batches = await writer.committedBatches - batchesBefore
        let entries = await writer.committedEntries - entriesBefore
        await registry.shutdown()
        let note = String(
            format: "%d transactions, %.1f auctions and %.1f bids per transaction", batches,
            Double(entries) / Double(max(batches, 1)), Double(result.accepted) / Double(max(batches, 1)))
        return (result, note)
    }
}
