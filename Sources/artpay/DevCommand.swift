import ArgumentParser
import AuctionCore
import AuctionRuntime
import Foundation
import Logging
import ServiceLifecycle
import Storage

/// `artpay dev`: the bid engine on this machine with demo data, no PostgreSQL needed.
///
/// Today it runs one engine process on an embedded SQLite store under `.artpay/`, creates a demo
/// sale of art lots closing within minutes (soft close on), lets simulated bidders bid, and prints
/// every decision and a status table. It stops by itself when every lot has closed, after
/// `--minutes`, or on Ctrl-C (graceful: pending appends finish first).
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Run ArtPay locally with demo data on an embedded store.")

    @Option(help: "Directory of the embedded store.")
    var dataDirectory: String = ".artpay"
    @Option(help: "Stop after this many minutes at the latest.")
    var minutes: Int = 12
    @Option(help: "Seconds until the first lot closes (later lots close a minute apart).")
    var firstCloseSeconds: Int = 120

    func validate() throws {
        guard minutes > 0, firstCloseSeconds > 0 else { throw ValidationError("--minutes and --first-close-seconds must be positive") }
    }

    func run() async throws {
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        var logger = Logger(label: "artpay.dev")
        logger.logLevel = .warning
        let path = (dataDirectory as NSString).appendingPathComponent("dev.sqlite")
        let store = try await SQLiteEventStore.open(path: path, logger: logger)
        try await store.migrate()
        let service = DemoSaleService(
            store: store, logger: logger, runFor: .seconds(minutes * 60), firstClose: .seconds(firstCloseSeconds))
        print("artpay dev: embedded store \(path)")
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: service)], gracefulShutdownSignals: [.sigint, .sigterm], logger: logger))
        try await group.run()
        await store.close()
    }
}

/// A demo sale run by the engine: lots, simulated bidders, a live report. Bounded in time.
struct DemoSaleService: Service {
    let store: SQLiteEventStore
    let logger: Logger
    let runFor: Duration
    let firstClose: Duration

    static let bidders = ["alice", "bob", "carol", "dave", "erin"].map { UserID(rawValue: $0)! }

    func run() async throws {
        let clock = SystemClock()
        let registry = AuctionRegistry(
            configuration: .init(node: NodeID(rawValue: "dev-1")!), store: store, writer: LogWriter(store: store),
            clock: clock, logger: logger)
        let lots = try await createSale(registry, clock: clock)
        print("demo sale: \(lots.count) lots; simulated bidders: \(Self.bidders.map(\.rawValue).joined(separator: ", "))")
        print("Ctrl-C stops (every acknowledged bid is already durable in the store).\n")
        let started = ContinuousClock.now
        await cancelWhenGracefulShutdown {
            var lastReport = ContinuousClock.now
            while ContinuousClock.now - started < runFor, !Task.isCancelled {
                var open: [(AuctionID, AuctionSummary)] = []
                for id in lots {
                    if let summary = await registry.loadedActor(id)?.summary, summary.status == .running {
                        open.append((id, summary))
                    }
                }
                if open.isEmpty { break }
                if let (id, summary) = open.randomElement(), clock.now() < summary.endsAt {
                    await bid(on: id, summary: summary, registry: registry)
                }
                if ContinuousClock.now - lastReport > .seconds(15) {
                    lastReport = ContinuousClock.now
                    await report(lots, registry: registry, now: clock.now())
                }
                try? await Task.sleep(for: .milliseconds(Int.random(in: 300...1_500)))
            }
        }
        await report(lots, registry: registry, now: clock.now())
        await registry.shutdown()
    }

    private func createSale(_ registry: AuctionRegistry, clock: SystemClock) async throws -> [AuctionID] {
        let now = clock.now()
        let sale = SaleID(rawValue: "evening-\(now.millisecondsSinceEpoch / 1_000)")!
        let catalogue: [(String, Money, Money?, Money?)] = [
            ("Untitled (Blue Study), oil on canvas", Money(minorUnits: 50_000, currency: .eur), Money(minorUnits: 120_000, currency: .eur), nil),
            ("Harbour at Dusk, watercolour", Money(minorUnits: 8_000, currency: .gbp), nil, Money(minorUnits: 60_000, currency: .gbp)),
            ("Bronze Hare, cast 1962", Money(minorUnits: 250_000, currency: .usd), Money(minorUnits: 400_000, currency: .usd), nil),
            ("Woodblock print, Edo period", Money(minorUnits: 30_000, currency: .jpy), nil, nil),
            ("Portrait of a Lady, charcoal", Money(minorUnits: 12_000, currency: .eur), nil, nil),
        ]
        var ids: [AuctionID] = []
        for (index, (title, starting, reserve, buyNow)) in catalogue.enumerated() {
            let id = AuctionID(rawValue: "\(sale.rawValue)-lot-\(index + 1)")!
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller-\(index % 2 + 1)")!, saleId: sale, title: title,
                startingPrice: starting, reservePrice: reserve, buyNowPrice: buyNow, opensAt: now,
                closesAt: now.advanced(by: firstClose + .seconds(60 * index)), extensionWindow: .seconds(30))
            let created = try await registry.submit(.create(terms), to: id).get()
            print("  \(id): \(title), from \(starting), closes in \(firstClose.components.seconds + Int64(60 * index)) s")
            ids.append(created.summary.auctionId)
        }
        return ids
    }

    private func bid(on id: AuctionID, summary: AuctionSummary, registry: AuctionRegistry) async {
        let bidder = Self.bidders.filter { $0 != summary.leaderId }.randomElement()!
        let increment = IncrementTable.standard(for: summary.price.currency).increment(at: summary.minimumNextBid.minorUnits)
        let maximum = Money(
            minorUnits: summary.minimumNextBid.minorUnits + Int64.random(in: 0...6) * increment,
            currency: summary.price.currency)
        let bidId = BidID(rawValue: "dev-\(UInt64.random(in: 0...UInt64.max))")!
        switch await registry.submit(.placeBid(PlaceBid(bidId: bidId, bidderId: bidder, maximum: maximum)), to: id) {
        case .success(let accepted):
            let outcome = accepted.receipt?.outcome == .leading ? "leads" : "is outbid by the leader's proxy"
            print("\(id): \(bidder) bids up to \(maximum) and \(outcome); price \(accepted.summary.price) (seq \(accepted.seq))")
        case .failure(let error):
            print("\(id): \(bidder)'s bid of \(maximum) refused: \(error.code) — \(error)")
        }
    }

    private func report(_ lots: [AuctionID], registry: AuctionRegistry, now: Timestamp) async {
        print("\n-- status --")
        for id in lots {
            guard let summary = await registry.loadedActor(id)?.summary else { continue }
            let state: String
            switch summary.status {
            case .running:
                let left = now.duration(to: summary.endsAt).components.seconds
                state = "open, \(summary.bidCount) bids, leader \(summary.leaderId?.rawValue ?? "-"), ends in \(max(0, left)) s"
            case .closed(.sold(let winner, _, let price)): state = "SOLD to \(winner) for \(price)"
            case .closed(.unsold(let reason)): state = "unsold (\(reason.rawValue))"
            case .cancelled(let reason): state = "cancelled: \(reason)"
            }
            print("  \(id)  \(summary.price)  \(state)")
        }
        print("")
    }
}
