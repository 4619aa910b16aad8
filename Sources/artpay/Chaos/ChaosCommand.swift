import ArgumentParser
import AuctionCore
import ChaosCheck
import ClusterCore
import Dispatch
import Foundation
import PostgresNIO
import Storage

/// Prints a progress line at once (stdout may be a pipe).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

/// `artpay chaos`: a fault-injection run against a real cluster of `artpay node` processes on
/// PostgreSQL, then the history check. Normally started by `chaos/run`, which brings the database.
struct ChaosCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Run a cluster under a bidding workload and seeded faults, then check nothing acknowledged was lost.")

    @Option(help: "Seconds of workload under faults.") var duration: Int = 150
    @Option(help: "Nodes in the cluster.") var nodes: Int = 3
    @Option(help: "Seed of the workload and the fault schedule (default: random, printed).") var seed: UInt64?
    @Option(help: "Faults to inject, comma-separated: kill, pause, partition, pg-restart, psp-outage.")
    var faults: String = "kill,pause,partition,pg-restart,psp-outage"
    @Option(help: "Where the history (JSON Lines) goes.") var history: String = "chaos-history.jsonl"
    @Option(help: "Directory for node configurations and logs (default: a new temporary one, kept).") var workDir:
        String?
    @Option(help: "Concurrent bidding clients.") var clients: Int = 8
    @Option(help: "Stop after this many requests even before the deadline.") var maxOperations: Int = 500_000
    @Option(help: "Nodes bind 127.0.0.N, N from this on.") var firstHost: Int = 21
    @Option(help: "PostgreSQL data directory (for pg-restart).") var pgDataDir: String?
    @Option(help: "The nodes' log level (info adds membership changes and shard acquisitions).")
    var nodeLogLevel = "notice"
    @Option(help: "PostgreSQL bin directory (for pg-restart).") var pgBin: String?
    @Option(help: "Liveness: the largest share (percent) of requests sent in calm that may end unknown.")
    var maxCalmUnknownPercent: Double = 1
    @Option(help: "Liveness: seconds after PostgreSQL is up again within which accepted bids/s must be back to 80 %.")
    var maxRecoverySeconds: Double = 2
    @Flag(help: "Debug: the nodes send fresh idempotency keys instead of the logged ones; the check must then fail.")
    var unsafeFreshIdempotencyKeys = false
    @Option(help: "The sandbox provider's faults (the JSON of POST /v1/sandbox/faults).")
    var pspFaults =
        #"{"errorBeforeRate":0.1,"errorAfterRate":0.1,"timeoutAfterChargeRate":0.1,"hangMilliseconds":3000,"rateLimitRate":0.05,"latencyMilliseconds":20,"webhookDelayMilliseconds":300,"webhookDuplicateRate":0.3,"webhookReorder":true,"outageUntilMilliseconds":0}"#
    @Flag(help: "Debug: start the nodes with fencing disabled; the check must then fail.") var unsafeDisableFencing =
        false
    @OptionGroup var postgres: PostgresOptions

    enum Fault: String, CaseIterable {
        case kill, pause, partition
        case pgRestart = "pg-restart"
        /// The payment provider answers 503 to everything for the hold: the breakers open.
        case pspOutage = "psp-outage"
    }

    func validate() throws {
        guard duration >= 20, nodes >= 3, clients >= 1 else {
            throw ValidationError("--duration ≥ 20, --nodes ≥ 3, --clients ≥ 1")
        }
        for name in faults.split(separator: ",") where Fault(rawValue: String(name)) == nil {
            throw ValidationError("unknown fault '\(name)' (kill, pause, partition, pg-restart)")
        }
    }

    func run() async throws {
        let seed = self.seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
        let enabled = faults.split(separator: ",").compactMap { Fault(rawValue: String($0)) }
        if enabled.contains(.partition), !ChaosCluster.partitionsAvailable() {
            throw ValidationError("partition faults need nft (apt-get install nftables), or leave out 'partition'")
        }
        let work = workDir ?? NSTemporaryDirectory() + "artpay-chaos-\(seed)-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        say(
            "chaos: seed \(seed), \(nodes) nodes, \(duration) s, faults \(enabled.map(\.rawValue).joined(separator: ",")), work dir \(work)"
        )

        let pgConfiguration = postgres.configuration(maximumConnections: 4)
        let database = "chaos_\(seed)_\(UInt32.random(in: 0...UInt32.max))"
        try await PostgresClient.withRunning(pgConfiguration) { client in
            _ = try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(database)"))
        }
        let providerHost = "127.0.0.\(firstHost + nodes)"
        let provider = (host: providerHost, port: try LocalNetwork.freePort(providerHost))
        let configured = try ChaosCluster.configure(
            count: nodes, firstHost: firstHost, workDirectory: work,
            pg: (pgConfiguration.host ?? "127.0.0.1", pgConfiguration.port ?? 5432, pgConfiguration.username, database),
            disableFencing: unsafeDisableFencing, provider: provider, freshKeys: unsafeFreshIdempotencyKeys)
        let cluster = ChaosCluster(
            nodes: configured, binary: Self.executablePath, workDirectory: work,
            postgres: pgBin.flatMap { bin in pgDataDir.map { (bin, $0) } }, provider: provider,
            nodeLogLevel: nodeLogLevel)
        let interrupt = Self.onInterrupt { cluster.emergencyCleanUp() }
        defer { for source in interrupt { source.cancel() } }

        let writer = try HistoryWriter(path: history)
        var report: CheckReport?
        var wedged: [String] = []
        var stale: [String] = []
        var unnotified: [String] = []
        var impact = FaultImpact()
        var moves: [ShardLeaseSampler.Round] = []
        var settlements: SettlementCheck.Report?
        do {
            try cluster.startProvider(faults: pspFaults, seed: seed)
            try await Self.waitUntil("the payment provider answers", seconds: 30) {
                (try? await ChaosCluster.status(cluster.providerURL + "/health")) == 200
            }
            for index in configured.indices { try cluster.start(index) }
            try await Self.waitUntil("the cluster converges", seconds: 90) { await cluster.converged() }
            let workload = try await ChaosWorkload.prepare(
                cluster: cluster, history: writer, seed: seed, bidderCount: 12, hot: 3, cold: 30)
            say("chaos: cluster up, workload starting")
            let breakers = BreakerTimeline()
            let breakerSampler = Task { await breakers.sample(cluster.nodes) }
            let watchers = workload.hot.enumerated().map { index, auction in
                Task { await workload.watch(auction, watcher: index + 1) }
            }
            let runStarted = Date()
            let followers = workload.bidders.indices.map { index in
                Task { await workload.followNotifications(of: index, since: runStarted) }
            }
            let deadline = ContinuousClock.now.advanced(by: .seconds(duration))
            // Buyers keep paying through the settle phase, until the settlement wait below ends.
            let payers = Task { await workload.pay(until: deadline.advanced(by: .seconds(180))) }
            async let bids: Void = workload.run(clients: clients, until: deadline, maxOperations: maxOperations)
            let leases = ShardLeaseSampler(configuration: Self.configuration(pgConfiguration, database: database))
            let rounds = try await nemesis(
                cluster: cluster, history: writer, seed: seed, faults: enabled, until: deadline, leases: leases,
                breakers: breakers)
            await bids
            say("chaos: \(workload.operations.load(ordering: .relaxed)) requests, \(rounds) fault rounds; healing")

            // Heal and settle: every node up and converged, watchers caught up with the logs.
            cluster.heal()
            try restartCrashed(cluster) { kind, target in
                writer.record(.fault(InjectedFault(at: writer.now, kind: kind, target: target)))
                say("chaos: \(kind) \(target)")
            }
            for index in configured.indices {
                switch cluster.state(index) {
                case .paused: cluster.resume(index)
                case .killed: try cluster.start(index)
                case .running: break
                }
            }
            try await Self.waitUntil("the healed cluster converges", seconds: 90) { await cluster.converged() }
            let ends = try await Self.lastSeqs(of: workload.hot, configuration: pgConfiguration, database: database)
            try? await Self.waitUntil("watchers catch up with the logs", seconds: 30) {
                workload.lastWatched.withLock { last in
                    workload.hot.enumerated().allSatisfy { index, auction in
                        (last[index + 1] ?? 0) >= (ends[auction] ?? 0)
                    }
                }
            }
            for watcher in watchers { watcher.cancel() }
            // Every bidder heard how each auction they bid on ended (the short ones end in the run).
            let ended = try await PostgresClient.withRunning(Self.configuration(pgConfiguration, database: database)) {
                client in
                try await CheckCommand.logs(
                    of: Set(workload.short.withLock { $0.map(\.id) }), from: PostgresEventStore(client: client))
            }
            let expected = NotificationCheck.expectedEndNotifications(
                logs: ended, for: Set(workload.bidders.map(\.id)))
            func missingNotifications() -> [String] {
                NotificationCheck.missing(expected: expected, received: workload.notified.withLock { $0 })
            }
            try? await Self.waitUntil("every bidder has heard how their auctions ended", seconds: 20) {
                missingNotifications().isEmpty
            }
            unnotified = missingNotifications()
            for follower in followers { follower.cancel() }
            say(
                "chaos: notifications: \(expected.values.map(\.count).reduce(0, +)) end notifications due to "
                    + "\(expected.count) bidders, \(unnotified.count) missing")
            // Liveness: after the heal, every auction answers through every node, and every read
            // model comes to equal the log.
            let everything = workload.hot + workload.cold + workload.short.withLock { $0.map(\.id) }
            wedged = await ChaosLiveness.probeEveryAuction(
                everything, through: cluster, token: workload.bidders[0].token)
            stale = await ChaosLiveness.compareReadModels(everything, through: cluster)
            settlements = try await settlementChecks(
                cluster: cluster, workload: workload,
                configuration: Self.configuration(pgConfiguration, database: database))
            payers.cancel()
            breakerSampler.cancel()
            let breakerReport = breakers.report()
            try breakerReport.write(
                to: URL(fileURLWithPath: history).deletingLastPathComponent().appendingPathComponent("breakers.txt"),
                atomically: true, encoding: .utf8)
            let opened = breakers.transitions.filter { $0.to == "open" }.count
            let closed = breakers.transitions.filter { $0.to == "closed" }.count
            say(
                "chaos: breakers (sampled each second, breakers.txt): opened \(opened) times, closed again \(closed) "
                    + "times; \(breakerReport.split(separator: "\n").last ?? "")")
            let overdue = await ChaosLiveness.overdueCommands(through: cluster)
            say(
                "chaos: watchdog: commands answered after the forward timeout, per node since its last start: "
                    + overdue.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            say(
                "chaos: liveness: \(everything.count) auctions probed through \(cluster.nodes.count) nodes, "
                    + "\(wedged.count) without an answer, \(stale.count) read-model differences")
            await cluster.stopAll()
            cluster.stopProvider()
            writer.close()

            let entries = try CheckCommand.read(history)
            let logs = try await PostgresClient.withRunning(Self.configuration(pgConfiguration, database: database)) {
                client in
                try await CheckCommand.logs(
                    of: CheckCommand.auctions(in: entries), from: PostgresEventStore(client: client))
            }
            // The logs too, so the run can be checked again (`artpay check --logs`) once PostgreSQL is gone.
            try CheckCommand.writeDump(
                logs,
                to: URL(fileURLWithPath: history).deletingLastPathComponent().appendingPathComponent("logs.jsonl").path)
            report = HistoryChecker.check(history: entries, logs: logs)
            impact = FaultImpact.measure(history: entries)
            moves = await leases.rounds
        } catch {
            await cluster.cleanUp()
            writer.close()
            say("chaos: run failed: \(error); node logs in \(work)")
            throw ExitCode(2)
        }
        guard let report, let settlements else { throw ExitCode(2) }
        say("chaos: seed \(seed); history \(history); node logs in \(work)")
        say(report.summary)
        say(impact.summary)
        say(ShardLeaseSampler.summary(moves))
        say(settlements.summary)
        for line in settlements.violations.prefix(20) { say("SETTLEMENT: \(line)") }
        let slow = impact.violations(
            maxCalmUnknownShare: maxCalmUnknownPercent / 100, maxRecoverySeconds: maxRecoverySeconds)
        for line in wedged { say("LIVENESS: no answer from \(line)") }
        for line in stale { say("LIVENESS: read model behind: \(line)") }
        for line in slow { say("LIVENESS: \(line)") }
        for line in unnotified.prefix(20) { say("LIVENESS: notification: \(line)") }
        if !report.passed || !wedged.isEmpty || !stale.isEmpty || !slow.isEmpty || !unnotified.isEmpty
            || !settlements.passed
        {
            throw ExitCode(1)
        }
    }

    /// The seeded fault schedule: each enabled kind once first (in seeded order), then seeded
    /// picks (a kind named twice in `--faults` is picked twice as often); a fault holds 3–8 s, then
    /// heals; a PostgreSQL restart is followed by 2–4 s of watching it recover; 2–5 s of calm
    /// between rounds. Shard epochs are sampled at the start of every round, so each round's
    /// ownership moves are counted. Returns the rounds.
    private func nemesis(
        cluster: ChaosCluster, history: HistoryWriter, seed: UInt64, faults: [Fault],
        until deadline: ContinuousClock.Instant, leases: ShardLeaseSampler, breakers: BreakerTimeline
    ) async throws -> Int {
        guard !faults.isEmpty else {
            try? await Task.sleep(until: deadline)
            return 0
        }
        var random = SeededRandom(seed: seed ^ 0xC4A0_5EED)
        var queue = faults.shuffled(using: &random)
        var rounds = 0
        func note(_ kind: String, _ target: String) {
            history.record(.fault(InjectedFault(at: history.now, kind: kind, target: target)))
            say("chaos: \(kind) \(target)")
        }
        while ContinuousClock.now.advanced(by: .seconds(12)) < deadline {
            try? await Task.sleep(for: .milliseconds(2_000 + Int64(random.next() % 3_000)))
            try restartCrashed(cluster, note: note)
            let fault = queue.isEmpty ? faults[Int(random.next() % UInt64(faults.count))] : queue.removeFirst()
            let target = Int(random.next() % UInt64(cluster.nodes.count))
            let name = cluster.nodes[target].id
            let hold = Duration.milliseconds(3_000 + Int64(random.next() % 5_000))
            await leases.startRound(
                fault == .pgRestart || fault == .pspOutage ? fault.rawValue : "\(fault.rawValue) \(name)")
            switch fault {
            case .kill:
                note("kill", name)
                cluster.kill(target)
                try? await Task.sleep(for: hold)
                try cluster.start(target)
                note("restart", name)
            case .pause:
                note("pause", name)
                cluster.pause(target)
                try? await Task.sleep(for: hold)
                cluster.resume(target)
                note("resume", name)
            case .partition:
                note("partition", name)
                try cluster.partition(target)
                try? await Task.sleep(for: hold)
                cluster.heal()
                note("heal", name)
            case .pspOutage:
                note("psp-outage", "provider")
                breakers.mark("outage starts")
                let until = Int64(Date().timeIntervalSince1970 * 1_000) + hold.wholeMilliseconds
                var faults = (try? JSONSerialization.jsonObject(with: Data(pspFaults.utf8)) as? [String: Any]) ?? [:]
                faults["outageUntilMilliseconds"] = until
                _ = try? await cluster.provider("POST", "/v1/sandbox/faults", json: faults)
                try? await Task.sleep(for: hold)
                note("psp-up", "provider")
                breakers.mark("outage ends")
            case .pgRestart:
                note("pg-restart", "postgresql")
                try cluster.restartPostgres()
                note("pg-up", "postgresql")
                try? await Task.sleep(for: .milliseconds(2_000 + Int64(random.next() % 2_000)))
            }
            rounds += 1
        }
        try? await Task.sleep(for: .seconds(2))
        await leases.startRound(nil)
        return rounds
    }

    /// A node that ended by itself crashed: that is a bug, recorded as a `crash` fault (the summary
    /// counts them; the node's log has the reason) — and the node is started again.
    private func restartCrashed(_ cluster: ChaosCluster, note: (String, String) -> Void) throws {
        for index in cluster.reapCrashed() {
            note("crash", cluster.nodes[index].id)
            try cluster.start(index)
            note("restart", cluster.nodes[index].id)
        }
    }

    static func configuration(_ base: PostgresClient.Configuration, database: String) -> PostgresClient.Configuration {
        var configuration = base
        configuration.database = database
        return configuration
    }

    static func lastSeqs(of auctions: [AuctionID], configuration: PostgresClient.Configuration, database: String)
        async throws
        -> [AuctionID: Int64]
    {
        try await PostgresClient.withRunning(Self.configuration(configuration, database: database)) { client in
            let store = PostgresEventStore(client: client)
            var ends: [AuctionID: Int64] = [:]
            for auction in auctions {
                var last: Int64 = 0
                while true {
                    let page = try await store.events(of: auction, after: last, limit: 1_000)
                    last = page.last?.seq ?? last
                    if page.count < 1_000 { break }
                }
                ends[auction] = last
            }
            return ends
        }
    }

    static func waitUntil(_ what: String, seconds: Int, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(seconds))
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw ChaosError("timed out after \(seconds) s waiting until \(what)")
    }

    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// On SIGINT or SIGTERM: runs `cleanUp` (stop the nodes, delete the rules), then exits 130.
    static func onInterrupt(_ cleanUp: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: .global()) }
        for source in sources {
            source.setEventHandler {
                print("\nchaos: interrupted; cleaning up")
                cleanUp()
                Foundation.exit(130)
            }
            source.resume()
        }
        return sources
    }
}
