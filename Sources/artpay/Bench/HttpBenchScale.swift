import ArtPayClient
import AuctionCore
import AuctionRuntime
import Foundation
import PostgresNIO
import Storage
import Synchronization

/// `artpay bench http --scale` and `--soak-minutes`: whether a bid costs the same when the data
/// is as large as production holds, how late live updates reach watchers on every node, and
/// whether a node's memory levels off under a steady load. ArtPay only; the same nodes, wrk load
/// and report conventions as the design comparison.
extension HttpBenchRunner {
    /// One row of the scale report: a load test, the nodes' resident memory after it, and what
    /// the SSE watchers (one per node) saw meanwhile.
    struct ScaleRow: Sendable {
        var row: HttpBenchRow
        var rssMiB: [Double]
        var delays: WatchedDelays?
    }

    struct ScaleReport: Sendable {
        var rows: [ScaleRow] = []
        var notes: [String] = []
    }

    // MARK: - Scale

    func measureScale(script: String, lotBids: Int, clusterAuctions: Int) async throws -> ScaleReport {
        let small = "\(run)-a-bids-small"
        let big = "\(run)-a-bids-big"
        let smallBids = min(1_000, lotBids)
        var report = ScaleReport()
        try installBinary()
        let prefillNotes = Mutex<[String]>([])
        let artpay = try await startArtPay {
            var configuration = self.base
            configuration.database = self.databases.nodes
            configuration.options.maximumConnections = 8
            try await PostgresClient.withRunning(configuration) { client in
                let store = PostgresEventStore(client: client)
                try await store.migrate()
                for (lot, bids) in [(small, smallBids), (big, lotBids)] {
                    let started = ContinuousClock.now
                    let (accepted, requests) = try await ScalePrefill.lot(store: store, id: lot, acceptedBids: bids)
                    let note =
                        "\(lot): \(accepted) accepted bids (\(requests) placed) through an engine on the nodes' "
                        + "database before the nodes started, in \(Self.seconds(since: started))"
                    say("bench http: " + note)
                    prefillNotes.withLock { $0.append(note) }
                }
            }
        }
        report.notes += prefillNotes.withLock { $0 }
        do {
            let urls = artpay.urls
            try await LocalNetwork.waitUntil("every node's read model has the prefilled lots", seconds: 120) {
                for node in urls {
                    guard let lot = try? await APIClient(base: node).call("GET", "/v1/auctions/\(big)", timeout: 5),
                        ((lot["bidCount"] as? NSNumber)?.intValue ?? 0) >= lotBids
                    else { return false }
                }
                return true
            }
            let idleBefore = try await idleCPU(artpay)
            report.notes.append("nodes idle with \(artpay.uniform.count + 3) auctions: \(idleBefore)")
            say("bench http: idle, \(artpay.uniform.count + 3) auctions: \(idleBefore)")

            let lots = HttpBenchCommand.lots(command.auctions)
            report.rows.append(
                try await scaleTest(artpay, load: "1 hot lot holding \(Self.count(smallBids)) bids", code: "ss", ids: [small], script: script))
            report.rows.append(
                try await scaleTest(artpay, load: "1 hot lot holding \(Self.count(lotBids)) bids", code: "sb", ids: [big], script: script))
            let fresh = try await scaleTest(
                artpay, load: "1 fresh hot lot, \(Self.count(artpay.uniform.count + 3)) auctions in the cluster",
                code: "sh", ids: [artpay.hot], script: script)
            report.rows.append(fresh)
            report.rows.append(
                try await scaleTest(
                    artpay, load: "\(lots), \(Self.count(artpay.uniform.count + 3)) auctions in the cluster", code: "su",
                    ids: artpay.uniform, script: script, watch: false))

            let extra = max(0, clusterAuctions - artpay.uniform.count - 4)
            if extra > 0 {
                let started = ContinuousClock.now
                let ids = (0..<extra).map { "\(run)-a-x\($0)" }
                try await HttpBenchSetup.createAuctions(
                    nodes: urls, sellerToken: artpay.users.sellerToken, ids: ids, sale: nil, concurrency: 32)
                let note = "created \(Self.count(extra)) more auctions over HTTP in \(Self.seconds(since: started))"
                say("bench http: " + note)
                report.notes.append(note)
            }
            let hot2 = "\(run)-a-hot2"
            try await HttpBenchSetup.createAuctions(
                nodes: urls, sellerToken: artpay.users.sellerToken, ids: [hot2], sale: nil)
            let total = artpay.uniform.count + 4 + extra
            try await LocalNetwork.waitUntil("every node's read model has \(total) auctions", seconds: 300) {
                for node in urls {
                    guard let lot = try? await APIClient(base: node).call("GET", "/v1/auctions/\(hot2)", timeout: 5),
                        lot["id"] as? String == hot2
                    else { return false }
                }
                return true
            }
            let idleAfter = try await idleCPU(artpay)
            report.notes.append("nodes idle with \(Self.count(total)) auctions: \(idleAfter)")
            say("bench http: idle, \(total) auctions: \(idleAfter)")
            report.rows.append(
                try await scaleTest(
                    artpay, load: "1 fresh hot lot, \(Self.count(total)) auctions in the cluster", code: "sh2",
                    ids: [hot2], script: script))
            report.rows.append(
                try await scaleTest(
                    artpay, load: "\(lots), \(Self.count(total)) auctions in the cluster", code: "su2",
                    ids: artpay.uniform, script: script, watch: false, board: "su"))

            // Live updates at half of the fresh hot lot's peak: each connection waits after an
            // answer so that the 63 together send about half as many bids.
            let target = fresh.row.requestsPerSecond / 2
            let pace = Self.pace(connections: command.bidders, target: target, peakLatency: fresh.row.p50)
            report.rows.append(
                try await scaleTest(
                    artpay,
                    load: "1 hot lot at half its peak (\(HttpBenchCommand.grouped(target)) requests/s asked)",
                    code: "sh3", ids: [hot2], script: script, pace: pace, board: "sh2"))
            try await artpay.stop()
        } catch {
            await artpay.cluster.cleanUp()
            throw error
        }
        return report
    }

    /// Each connection's wait (ms) after an answer so that `connections` send about `target`
    /// requests a second, given the latency they saw at full load.
    static func pace(connections: Int, target: Double, peakLatency: Double) -> Int {
        guard target > 0 else { return 0 }
        let interval = Double(connections) / target * 1_000
        return max(1, Int((interval - peakLatency / 2).rounded()))
    }

    private func scaleTest(
        _ artpay: ArtPayBenchCluster, load: String, code: String, ids: [String], script: String, watch: Bool = true,
        pace: Int = 0, board: String? = nil
    ) async throws -> ScaleRow {
        let watchers = watch ? try await DelayWatchers.start(auction: ids[0], nodes: artpay.urls) : nil
        let row: HttpBenchRow
        do {
            row = try await loadTest(
                design: Label.artpay, load: load, code: code, script: script, targets: artpay.urls,
                serverPids: artpay.pids, serverName: "nodes", ids: ids, pace: pace, board: board,
                onMeasure: { watchers?.startCounting() })
        } catch {
            watchers?.stop()
            throw error
        }
        let delays = await watchers?.finish()
        if let delays { say("  live updates: \(delays.text)") }
        return ScaleRow(row: row, rssMiB: artpay.pids.map(ProcessMemory.residentMiB), delays: delays)
    }

    /// The nodes' CPU over 5 s without load, in percent of one core per node.
    private func idleCPU(_ artpay: ArtPayBenchCluster) async throws -> String {
        let before = artpay.pids.map(CPUTime.process)
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(5))
        let wall = (ContinuousClock.now - started).benchSeconds
        let after = artpay.pids.map(CPUTime.process)
        let percents = zip(before, after).map { String(format: "%.1f%%", ($1 - $0) / wall * 100) }
        let rss = artpay.pids.map { String(format: "%.0f", ProcessMemory.residentMiB($0)) }
        return "CPU per node \(percents.joined(separator: ", ")) of a core; RSS \(rss.joined(separator: ", ")) MiB"
    }

    // MARK: - Soak

    struct SoakMinute: Sendable {
        var minute: Int
        var row: HttpBenchRow
        var rssMiB: [Double]
    }

    /// `minutes` one-minute wrk runs in a row on the uniform lots at about half of their peak
    /// (measured first), with each node's resident memory after every minute.
    func measureSoak(script: String, minutes: Int) async throws -> (peak: HttpBenchRow, minutes: [SoakMinute]) {
        try installBinary()
        let artpay = try await startArtPay()
        do {
            let lots = HttpBenchCommand.lots(command.auctions)
            let peak = try await loadTest(
                design: Label.artpay, load: "\(lots), peak", code: "kp", script: script, targets: artpay.urls,
                serverPids: artpay.pids, serverName: "nodes", ids: artpay.uniform)
            let target = peak.requestsPerSecond / 2
            let pace = Self.pace(connections: command.bidders, target: target, peakLatency: peak.p50)
            say("bench http: soak, \(minutes) min at about \(HttpBenchCommand.grouped(target)) requests/s (\(pace) ms pause per connection)")
            var rows: [SoakMinute] = []
            let perServer = command.bidders / HttpBenchCommand.servers
            let wrk = WrkLoad(
                wrk: command.wrk, script: script, targets: artpay.urls, tokensFile: tokensFile,
                auctionsFile: "\(work)/kp.auctions", boardFile: "\(work)/kp.board", connections: perServer,
                threads: threads, spread: command.spread ?? command.bidders, work: work, pace: pace)
            for minute in 1...minutes {
                let row = try await wrk.run(
                    seconds: 60, label: "k\(minute)", runId: "\(run)-k\(minute)m", children: children,
                    serverPids: artpay.pids, serverName: "nodes", design: Label.artpay, load: "minute \(minute)")
                let rss = artpay.pids.map(ProcessMemory.residentMiB)
                say(
                    "  soak minute \(minute): " + HttpBenchCommand.line(row) + "; RSS "
                        + rss.map { String(format: "%.0f", $0) }.joined(separator: ", ") + " MiB")
                rows.append(SoakMinute(minute: minute, row: row, rssMiB: rss))
                if let crashed = artpay.cluster.reapCrashed().first {
                    throw ChaosError("node \(artpay.nodes[crashed].id) exited during the soak")
                }
            }
            try await artpay.stop()
            return (peak, rows)
        } catch {
            await artpay.cluster.cleanUp()
            throw error
        }
    }

    // MARK: - Formatting

    static func count(_ value: Int) -> String { HttpBenchCommand.grouped(Double(value)) }

    static func seconds(since start: ContinuousClock.Instant) -> String {
        String(format: "%.1f s", (ContinuousClock.now - start).benchSeconds)
    }
}

/// Fills a lot with bids through the real engine (registry, auction actor, group commit, the
/// actor's snapshots), on the store the nodes will use, before they start: a lot that holds as
/// many bids as production's largest, in seconds instead of the minutes HTTP would take.
enum ScalePrefill {
    static func lot(store: PostgresEventStore, id: String, acceptedBids: Int) async throws -> (Int, Int) {
        let clock = SystemClock()
        let registry = AuctionRegistry(
            configuration: .init(node: NodeID(rawValue: "bench-prefill")!), store: store,
            writer: LogWriter(store: store), clock: clock)
        let auction = AuctionID(rawValue: id)!
        let now = clock.now()
        let terms = AuctionTerms(
            auctionId: auction, sellerId: UserID(rawValue: "bench-prefill-seller")!, title: "Bench lot \(id)",
            startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
            closesAt: now.advanced(by: .seconds(86_400)), extensionWindow: .zero)
        _ = try await registry.submit(.create(terms), to: auction).get()
        let bidders = 16
        final class Counts: Sendable {
            let accepted = Atomic<Int>(0)
            let requests = Atomic<Int>(0)
        }
        let counts = Counts()
        let board = PriceBoard(starting: 1_000, spread: 1, increments: .standard(for: .eur))
        let deadline = ContinuousClock.now.advanced(by: .seconds(600))
        await withTaskGroup(of: Void.self) { group in
            for bidder in 0..<bidders {
                group.addTask {
                    var iteration = 0
                    while counts.accepted.load(ordering: .relaxed) < acceptedBids, ContinuousClock.now < deadline {
                        iteration += 1
                        counts.requests.add(1, ordering: .relaxed)
                        let bid = PlaceBid(
                            bidId: BidID(rawValue: "p\(bidder)-\(iteration)")!,
                            bidderId: UserID(rawValue: "bench-prefill-bidder-\(bidder)")!,
                            maximum: Money(minorUnits: board.nextMaximum(auction: 0), currency: .eur))
                        switch await registry.submit(.placeBid(bid), to: auction) {
                        case .success(let done):
                            counts.accepted.add(1, ordering: .relaxed)
                            board.learn(auction: 0, minimum: done.summary.minimumNextBid.minorUnits)
                        case .failure(.rejected(.belowMinimum(let minimum))):
                            board.learn(auction: 0, minimum: minimum.minorUnits)
                        case .failure(.rejected(.maximumNotAboveCurrent(let current))):
                            board.learn(auction: 0, minimum: current.minorUnits + 1)
                        case .failure:
                            break
                        }
                    }
                }
            }
        }
        await registry.shutdown()
        let done = counts.accepted.load(ordering: .relaxed)
        guard done >= acceptedBids else {
            throw ChaosError("prefilling \(id) stopped at \(done) of \(acceptedBids) accepted bids")
        }
        return (done, counts.requests.load(ordering: .relaxed))
    }
}

/// What SSE watchers saw of one auction: for each bid event that reached them while the load
/// was measured, the delay from the bid's decision time (`at`, set by the owner before the event
/// is made durable) to its arrival; and whether any seq was skipped or repeated.
struct WatchedDelays: Sendable {
    var perNode: [(node: String, delays: [Double], gaps: Int, repeats: Int)]

    var all: [Double] { perNode.flatMap(\.delays).sorted() }

    static func quantile(_ q: Double, of sorted: [Double]) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = Int((Double(sorted.count) * q).rounded(.up))
        return sorted[min(sorted.count, max(rank, 1)) - 1]
    }

    var text: String {
        perNode.map { node in
            let sorted = node.delays.sorted()
            return String(
                format: "%@ %d events, p50 %.0f / p99 %.0f / max %.0f ms, %d gaps, %d repeats", node.node,
                sorted.count, Self.quantile(0.5, of: sorted), Self.quantile(0.99, of: sorted), sorted.last ?? .nan,
                node.gaps, node.repeats)
        }.joined(separator: "; ")
    }
}

/// One SSE watcher per node on one auction, from its current seq on.
final class DelayWatchers: Sendable {
    private struct State: Sendable {
        var countFrom: Date = .distantFuture
        var delays: [[Double]]
        var last: [Int64]
        var gaps: [Int]
        var repeats: [Int]
    }

    private let nodes: [String]
    private let state: Mutex<State>
    private let tasks = Mutex<[Task<Void, Never>]>([])

    private init(nodes: [String], from seq: Int64) {
        self.nodes = nodes
        state = Mutex(
            State(
                delays: Array(repeating: [], count: nodes.count), last: Array(repeating: seq, count: nodes.count),
                gaps: Array(repeating: 0, count: nodes.count), repeats: Array(repeating: 0, count: nodes.count)))
    }

    static func start(auction: String, nodes: [String]) async throws -> DelayWatchers {
        let view = try await APIClient(base: nodes[0]).call("GET", "/v1/auctions/\(auction)", timeout: 10)
        let seq = (view["seq"] as? NSNumber)?.int64Value ?? 0
        let watchers = DelayWatchers(nodes: nodes, from: seq)
        for (index, node) in nodes.enumerated() {
            let task = Task {
                let parser = ISO8601DateFormatter()
                parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
                let stream = EventStreamClient.follow(
                    auction, after: seq, nodes: [node], attempts: 3, dropRepeats: false)
                for await (event, _) in stream {
                    let arrived = Date()
                    guard let eventSeq = event.seq else { continue }
                    var at: Date?
                    if event.type == "bid",
                        let object = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any],
                        let text = object["at"] as? String
                    {
                        at = parser.date(from: text)
                    }
                    watchers.state.withLock { state in
                        if eventSeq <= state.last[index] {
                            state.repeats[index] += 1
                        } else {
                            if eventSeq > state.last[index] + 1 { state.gaps[index] += 1 }
                            state.last[index] = eventSeq
                        }
                        if let at, at >= state.countFrom {
                            state.delays[index].append(arrived.timeIntervalSince(at) * 1_000)
                        }
                    }
                    if Task.isCancelled { break }
                }
            }
            watchers.tasks.withLock { $0.append(task) }
        }
        return watchers
    }

    /// Bids decided from now on count.
    func startCounting() {
        let now = Date()
        state.withLock { $0.countFrom = now }
    }

    func stop() {
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }

    /// Waits up to 2 s for the last events of the load to arrive, then stops the watchers.
    func finish() async -> WatchedDelays {
        try? await Task.sleep(for: .seconds(2))
        stop()
        return state.withLock { state in
            WatchedDelays(
                perNode: nodes.indices.map { (nodes[$0], state.delays[$0], state.gaps[$0], state.repeats[$0]) })
        }
    }
}

/// Resident memory of a process, from /proc.
enum ProcessMemory {
    static func residentMiB(_ pid: pid_t) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return .nan }
        return kib / 1_024
    }
}

extension HttpBenchCommand {
    static func scaleMarkdown(
        _ report: HttpBenchRunner.ScaleReport, command: HttpBenchCommand, run: String, postgres: String
    ) -> String {
        var text = """
            | load (ArtPay, 3 nodes, HTTP) | requests/s | accepted bids/s | p50 ms | p99 ms | SSE delay p50 / p99 / max ms (gaps) | RSS per node, MiB | CPU, % of one core |
            | --- | ---: | ---: | ---: | ---: | --- | --- | --- |

            """
        for scaled in report.rows {
            let row = scaled.row
            var delay = "–"
            if let delays = scaled.delays {
                let all = delays.all
                let gaps = delays.perNode.reduce(0) { $0 + $1.gaps + $1.repeats }
                delay = String(
                    format: "%.0f / %.0f / %.0f (%d)", WatchedDelays.quantile(0.5, of: all),
                    WatchedDelays.quantile(0.99, of: all), all.last ?? .nan, gaps)
            }
            text += String(
                format: "| %@ | %@ | %@ | %.2f | %.2f | %@ | %@ | %@ |\n", row.load, grouped(row.requestsPerSecond),
                grouped(row.acceptedPerSecond), row.p50, row.p99, delay,
                scaled.rssMiB.map { String(format: "%.0f", $0) }.joined(separator: ", "), row.cpu)
        }
        let rows = report.rows.map(\.row)
        func ratio(_ a: Int, _ b: Int) -> String? {
            guard rows.indices.contains(a), rows.indices.contains(b), rows[b].requestsPerSecond > 0 else { return nil }
            return String(
                format: "%.2f× requests/s, %.2f× accepted bids/s", rows[a].requestsPerSecond / rows[b].requestsPerSecond,
                rows[a].acceptedPerSecond / max(rows[b].acceptedPerSecond, 1e-9))
        }
        var lines: [String] = []
        if let lot = ratio(1, 0) { lines.append("- Lot holding \(grouped(Double(command.scaleLotBids))) bids ÷ 1,000: \(lot)") }
        if let hot = ratio(4, 2) {
            lines.append("- Fresh hot lot, \(grouped(Double(command.scaleAuctions))) auctions ÷ 1,000: \(hot)")
        }
        if let uniform = ratio(5, 3) {
            lines.append("- \(lots(command.auctions)), \(grouped(Double(command.scaleAuctions))) auctions ÷ 1,000: \(uniform)")
        }
        if let paced = report.rows.last?.delays {
            lines.append("- Live updates at half of the peak, per node: \(paced.text)")
        }
        text += "\n" + lines.joined(separator: "\n") + "\n\n" + report.notes.map { "- \($0)" }.joined(separator: "\n")
        text += """


            Run \(run), \(Date().formatted(.iso8601)), \(ProcessInfo.processInfo.activeProcessorCount) cores, \
            PostgreSQL \(postgres). \(command.bidders) closed-loop bidders over \(command.bidders) keep-alive \
            connections (one wrk per node, scripts/bench-http/bids.lua), \(command.warmup) s warm-up, then \
            \(command.seconds) s per test. SSE delay: one watcher per node (`GET /v1/auctions/{id}/events` from \
            the lot's seq at the start) on the lot under load; for each bid decided during the measured seconds, \
            its arrival time at the watcher minus the bid's decision time (`at`, the owner's clock, before the \
            append), all on one machine's clock, milliseconds; gaps counts skipped or repeated seqs. The half-peak \
            row paces every connection (wrk's delay()) to about half of the fresh hot lot's requests/s.

            Command: `artpay \(CommandLine.arguments.dropFirst().joined(separator: " "))`

            """
        return text
    }

    static func soakMarkdown(
        peak: HttpBenchRow, minutes: [HttpBenchRunner.SoakMinute], command: HttpBenchCommand, run: String,
        postgres: String
    ) -> String {
        var text = """
            | minute | requests/s | accepted bids/s | p50 ms | p99 ms | failures | RSS per node, MiB | CPU, % of one core |
            | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |

            """
        for minute in minutes {
            let row = minute.row
            text += String(
                format: "| %d | %@ | %@ | %.2f | %.2f | %d | %@ | %@ |\n", minute.minute, grouped(row.requestsPerSecond),
                grouped(row.acceptedPerSecond), row.p50, row.p99, row.failureCount,
                minute.rssMiB.map { String(format: "%.0f", $0) }.joined(separator: ", "), row.cpu)
        }
        var lines = [
            String(
                format: "- Peak first (%d s): %@ requests/s, %@ accepted bids/s; the soak asked for half.",
                command.seconds, grouped(peak.requestsPerSecond), grouped(peak.acceptedPerSecond))
        ]
        if let first = minutes.first, let last = minutes.last {
            lines.append(
                String(
                    format: "- Last minute ÷ first, accepted bids/s: %.3f", last.row.acceptedPerSecond
                        / max(first.row.acceptedPerSecond, 1e-9)))
            let window = Array(minutes.suffix(max(1, minutes.count * 2 / 3)))
            for node in first.rssMiB.indices {
                let values = window.map { $0.rssMiB[node] }
                if let low = values.min(), let high = values.max(), low > 0 {
                    lines.append(
                        String(
                            format: "- Node %d, RSS over the last %d minutes: %.0f–%.0f MiB (max ÷ min %.3f)", node + 1,
                            window.count, low, high, high / low))
                }
            }
        }
        text += "\n" + lines.joined(separator: "\n") + """


            Run \(run), \(Date().formatted(.iso8601)), \(ProcessInfo.processInfo.activeProcessorCount) cores, \
            PostgreSQL \(postgres). \(command.bidders) bidders over \(command.bidders) keep-alive connections on \
            \(lots(command.auctions)), each connection pausing after an answer so that together they ask about \
            half of the peak; one wrk run of 60 s per minute (new connections each minute); RSS from /proc after \
            each minute.

            Command: `artpay \(CommandLine.arguments.dropFirst().joined(separator: " "))`

            """
        return text
    }
}
