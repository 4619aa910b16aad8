import ArgumentParser
import ArtPayClient
import AuctionCore
import Foundation
import Logging
import PostgresNIO
import Storage

/// `artpay bench settle`: how long a sold lot waits for its money with a healthy provider — from
/// the hammer (a buy-now) to the capture, and the steps between, read from the lots' own logs.
struct SettleBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settle",
        abstract: "Settlement latency: hammer → captured with a healthy sandbox provider, p50/p99.",
        discussion: """
            Starts three `artpay node` processes on PostgreSQL (127.0.0.1-3) and the sandbox provider \
            (`artpay psp`, no faults) on 127.0.0.4; registers --buyers buyers, each with pm_card_visa on \
            file; creates --lots buy-now lots; then buys them at --rate purchases per second, each through \
            a node picked in turn (two times in three not the lot's owner). Nobody calls the payment API: \
            the owner's settlement driver charges the saved card. Once every lot is settled, each lot's \
            log gives the times, all taken by the owner's clock: bought now → authorization sent → \
            authorized → capture sent → captured. Every process started is stopped by pid.
            """)

    @OptionGroup var postgres: PostgresOptions
    @Option(help: "Lots sold (one buy-now each).") var lots = 300
    @Option(help: "Purchases per second.") var rate = 20
    @Option(help: "Buyers (each with a saved card), taking turns.") var buyers = 30
    @Option(help: "Also write the report as Markdown to this file.") var markdown: String?
    @Option(help: "Directory for configurations and logs (default: a new temporary one).") var workDir: String?

    func validate() throws {
        guard lots > 0, rate > 0, buyers > 0 else { throw ValidationError("--lots, --rate and --buyers must be positive") }
    }

    func run() async throws {
        let run = "s" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let work = workDir ?? NSTemporaryDirectory() + "artpay-bench-settle-\(run)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let children = BenchChildren()
        let interrupt = children.killAllOnInterrupt()
        defer { for source in interrupt { source.cancel() } }
        let base = postgres.configuration(maximumConnections: 4)
        let name = "bench_settle_\(run)"
        var database = base
        database.database = name
        _ = try await PostgresClient.withRunning(base) { client in
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        let binary = work + "/artpay"
        try FileManager.default.copyItem(atPath: ChaosCommand.executablePath, toPath: binary)
        let provider = (host: "127.0.0.4", port: try LocalNetwork.freePort("127.0.0.4"))
        let nodes = try ChaosCluster.configure(
            count: 3, firstHost: 1, workDirectory: work,
            pg: (base.host ?? "127.0.0.1", base.port ?? 5432, base.username, name),
            disableFencing: false, provider: provider)
        let cluster = ChaosCluster(
            nodes: nodes, binary: binary, workDirectory: work, postgres: nil, provider: provider)
        children.onCleanUp { cluster.emergencyCleanUp() }
        let report: String
        do {
            try cluster.startProvider(faults: "{}", seed: 1)
            for index in nodes.indices { try cluster.start(index) }
            say("bench settle: run \(run), \(lots) lots at \(rate)/s, \(buyers) buyers; work dir \(work)")
            try await LocalNetwork.waitUntil("every node is ready and sees 3 members", seconds: 120) {
                await cluster.converged()
            }
            let urls = nodes.map(\.http)
            let users = try await HttpBenchSetup.users(
                nodes: urls, bidders: buyers, run: run,
                admin: (username: "chaos-admin", password: "chaos-admin-password"))
            for (index, token) in users.bidderTokens.enumerated() {
                try await APIClient(base: urls[index % 3], token: token).call(
                    "POST", "/v1/me/payment-methods", json: ["paymentMethod": "pm_card_visa"])
            }
            let ids = (0..<lots).map { "\(run)-lot-\($0)" }
            try await createBuyNowLots(ids, nodes: urls, sellerToken: users.sellerToken)
            say("bench settle: \(lots) lots created; buying them at \(rate)/s")
            try await buy(ids, nodes: urls, tokens: users.bidderTokens)
            try await LocalNetwork.waitUntil("every lot is settled", seconds: 60 + lots / 2) {
                await settledCount(nodes: urls) >= lots
            }
            let timings = try await PostgresClient.withRunning(database) { client in
                try await Self.timings(of: ids, store: PostgresEventStore(client: client))
            }
            report = Self.markdown(timings, command: self, run: run)
            await cluster.cleanUp()
        } catch {
            children.killAll()
            await cluster.cleanUp()
            await HttpBenchCommand.drop([name], base)
            say("bench settle: failed: \(error)\nbench settle: logs in \(work)")
            throw ExitCode(2)
        }
        await HttpBenchCommand.drop([name], base)
        print("\n" + report)
        if let markdown { try report.write(toFile: markdown, atomically: true, encoding: .utf8) }
        if workDir == nil { try? FileManager.default.removeItem(atPath: work) }
    }

    private func createBuyNowLots(_ ids: [String], nodes: [String], sellerToken: String) async throws {
        let closesAt = Date().addingTimeInterval(86_400).formatted(.iso8601)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    let body: [String: Any] = [
                        "id": id, "title": "Settlement bench \(id)", "currency": "EUR", "startingPrice": 1_000,
                        "buyNowPrice": 50_000, "closesAt": closesAt,
                    ]
                    _ = try await APIClient(base: nodes[index % nodes.count], token: sellerToken).call(
                        "POST", "/v1/auctions", json: body, timeout: 20)
                }
                if index >= 15 { try await group.next() }
            }
            try await group.waitForAll()
        }
    }

    /// One purchase every 1/rate s, each on the next node in turn, without waiting for the last.
    private func buy(_ ids: [String], nodes: [String], tokens: [String]) async throws {
        let interval = Duration.seconds(1) / rate
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, id) in ids.enumerated() {
                try await Task.sleep(until: start + interval * index)
                group.addTask {
                    let body: [String: Any] = ["bidId": "buy-\(id)", "price": 50_000, "currency": "EUR"]
                    _ = try await APIClient(base: nodes[index % nodes.count], token: tokens[index % tokens.count])
                        .call("POST", "/v1/auctions/\(id)/buy-now", json: body, timeout: 20)
                }
            }
            try await group.waitForAll()
        }
    }

    private func settledCount(nodes: [String]) async -> Int {
        guard
            let admin = try? await APIClient(base: nodes[0]).loggedIn("chaos-admin", "chaos-admin-password"),
            let answer = try? await admin.call("GET", "/v1/settlements?state=settled&limit=1000")
        else { return 0 }
        return (answer["settlements"] as? [Any])?.count ?? 0
    }

    /// Milliseconds from the purchase to each step, per lot, from the lot's log.
    struct Timing {
        var authorizeSent: Int64
        var authorized: Int64
        var captureSent: Int64
        var captured: Int64
    }

    static func timings(of ids: [String], store: PostgresEventStore) async throws -> [Timing] {
        var timings: [Timing] = []
        for id in ids {
            guard let auction = AuctionID(rawValue: id) else { continue }
            let log = try await store.events(of: auction, after: 0, limit: 100).map(\.event)
            var sold: Timestamp?
            var steps: [String: Timestamp] = [:]
            for event in log {
                switch event {
                case .boughtNow(let purchase): sold = purchase.at
                case .settlement(.callStarted(let call, let at)): steps["\(call.operation)Sent", default: at] = at
                case .settlement(.authorized(_, _, let at)): steps["authorized"] = at
                case .settlement(.captured(_, _, let at)): steps["captured"] = at
                default: break
                }
            }
            guard let sold, let a = steps["authorizeSent"], let b = steps["authorized"], let c = steps["captureSent"],
                let d = steps["captured"]
            else { throw ChaosError("lot \(id) has no complete settlement in its log") }
            func since(_ time: Timestamp) -> Int64 { time.millisecondsSinceEpoch - sold.millisecondsSinceEpoch }
            timings.append(
                Timing(authorizeSent: since(a), authorized: since(b), captureSent: since(c), captured: since(d)))
        }
        return timings
    }

    static func markdown(_ timings: [Timing], command: SettleBenchCommand, run: String) -> String {
        func quantile(_ values: [Int64], _ q: Double) -> Int64 {
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1))]
        }
        var text = """
            | from the hammer (buy now) to | p50 ms | p90 ms | p99 ms | max ms |
            | --- | ---: | ---: | ---: | ---: |

            """
        let rows: [(String, KeyPath<Timing, Int64>)] = [
            ("authorization sent (key logged)", \.authorizeSent), ("authorized", \.authorized),
            ("capture sent (key logged)", \.captureSent), ("**captured**", \.captured),
        ]
        for (name, path) in rows {
            let values = timings.map { $0[keyPath: path] }
            text +=
                "| \(name) | \(quantile(values, 0.5)) | \(quantile(values, 0.9)) | \(quantile(values, 0.99)) | \(values.max() ?? 0) |\n"
        }
        text += """

            Run \(run), \(Date().formatted(.iso8601)), \(ProcessInfo.processInfo.activeProcessorCount) cores: \
            \(timings.count) lots bought now at \(command.rate)/s through 3 nodes on PostgreSQL, each paid by the \
            buyer's saved card with no call from them; sandbox provider without faults. Times from the lots' logs \
            (the owner's clock, millisecond resolution).

            Command: `artpay \(CommandLine.arguments.dropFirst().joined(separator: " "))`

            """
        return text
    }
}
