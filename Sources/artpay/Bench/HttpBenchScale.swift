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
                try await scaleTest(
                    artpay, load: "1 hot lot holding \(Self.count(smallBids)) bids", code: "ss", ids: [small],
                    script: script))
            report.rows.append(
                try await scaleTest(
                    artpay, load: "1 hot lot holding \(Self.count(lotBids)) bids", code: "sb", ids: [big],
                    script: script))
            let fresh = try await scaleTest(
                artpay, load: "1 fresh hot lot, \(Self.count(artpay.uniform.count + 3)) auctions in the cluster",
                code: "sh", ids: [artpay.hot], script: script)
            report.rows.append(fresh)
            report.rows.append(
                try await scaleTest(
                    artpay, load: "\(lots), \(Self.count(artpay.uniform.count + 3)) auctions in the cluster",
                    code: "su",
                    ids: artpay.uniform, script: script, watch: false))

            let extra = max(0, clusterAuctions - artpay.uniform.count - 4)
            let loadedBefore = await Self.actorsLoaded(urls)
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
            // Creating an auction loads its actor on the owner; idle ones are passivated a minute
            // later. Measure the cluster as it holds the auctions, not in that minute.
            let settled = ContinuousClock.now
            var loaded = await Self.actorsLoaded(urls)
            while let now = loaded, let before = loadedBefore, now > before + 100,
                ContinuousClock.now - settled < .seconds(240)
            {
                try await Task.sleep(for: .seconds(3))
                loaded = await Self.actorsLoaded(urls) ?? loaded
            }
            let passivation =
                "auction actors loaded on the nodes: \(loadedBefore.map(Self.count) ?? "?") before the creation, "
                + "\(loaded.map(Self.count) ?? "?") \(Self.seconds(since: settled)) after it ended"
            say("bench http: " + passivation)
            report.notes.append(passivation)
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

    /// The auction actors loaded on all nodes together (`artpay_auctions_loaded`); nil when a node
    /// did not say.
    static func actorsLoaded(_ nodes: [String]) async -> Int? {
        var total = 0
        for node in nodes {
            guard let answer = try? await APIClient.send("GET", node + "/metrics", timeout: 5),
                answer.status == 200,
                let line = String(decoding: answer.body, as: UTF8.self).split(separator: "\n")
                    .first(where: { $0.hasPrefix("artpay_auctions_loaded ") }),
                let value = Double(line.dropFirst("artpay_auctions_loaded ".count))
            else { return nil }
            total += Int(value)
        }
        return total
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
            say(
                "bench http: soak, \(minutes) min at about \(HttpBenchCommand.grouped(target)) requests/s (\(pace) ms pause per connection)"
            )
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
/// many bids as production's largest, in a minute or two instead of the many minutes HTTP would
/// take. The engine runs on a manual clock that moves 100 ms per accepted bid and ends about now,
/// so the bids are spread over hours of event time as on a real lot (what the bid ledger keeps
/// whole depends on it).
enum ScalePrefill {
    static func lot(store: PostgresEventStore, id: String, acceptedBids: Int) async throws -> (Int, Int) {
        let spacing = Duration.milliseconds(100)
        let clock = ManualClock(now: SystemClock().now().advanced(by: .zero - spacing * (acceptedBids + 60)))
        let registry = AuctionRegistry(
            configuration: .init(node: NodeID(rawValue: "bench-prefill")!), store: store,
            writer: LogWriter(store: store), clock: clock)
        let auction = AuctionID(rawValue: id)!
        let now = clock.now()
        let terms = AuctionTerms(
            auctionId: auction, sellerId: UserID(rawValue: "bench-prefill-seller")!, title: "Bench lot \(id)",
            startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
            closesAt: SystemClock().now().advanced(by: .seconds(86_400)), extensionWindow: .zero)
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
                            clock.advance(by: spacing)
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

/// One SSE watcher per node on one auction, from its current seq on. Each reads its stream on a
/// thread of its own with a plain socket and parses only what it measures: URLSession and
/// Foundation's JSON cost half a core at a few hundred events a second, CPU the nodes under test
/// would miss and delay that would show up as theirs.
final class DelayWatchers: Sendable {
    private struct State: Sendable {
        var countFrom: Int64 = .max
        var delays: [[Double]]
        var last: [Int64]
        var gaps: [Int]
        var repeats: [Int]
    }

    private let nodes: [String]
    private let state: Mutex<State>
    private let sockets = Mutex<[Int32]>([])

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
            guard let url = URL(string: node), let host = url.host, let port = url.port else {
                throw ChaosError("not a node URL: \(node)")
            }
            let socket = try RawSocket.connect(host: host, port: port)
            watchers.sockets.withLock { $0.append(socket) }
            let request =
                "GET /v1/auctions/\(auction)/events?since=\(seq) HTTP/1.1\r\nHost: \(host):\(port)\r\n"
                + "Accept: text/event-stream\r\n\r\n"
            try RawSocket.send(socket, request)
            let thread = Thread {
                var reader = ServerSentEventReader()
                var buffer = [UInt8](repeating: 0, count: 65_536)
                while true {
                    let count = recv(socket, &buffer, buffer.count, 0)
                    guard count > 0 else { break }
                    let arrived = RawSocket.nowMilliseconds()
                    for event in reader.feed(buffer[0..<count]) {
                        watchers.record(event, node: index, arrived: arrived)
                    }
                }
            }
            thread.start()
        }
        return watchers
    }

    private func record(_ event: ServerSentEventReader.Event, node index: Int, arrived: Int64) {
        state.withLock { state in
            if event.seq <= state.last[index] {
                state.repeats[index] += 1
            } else {
                if event.seq > state.last[index] + 1 { state.gaps[index] += 1 }
                state.last[index] = event.seq
            }
            if let at = event.bidAt, at >= state.countFrom { state.delays[index].append(Double(arrived - at)) }
        }
    }

    /// Bids decided from now on count.
    func startCounting() {
        let now = RawSocket.nowMilliseconds()
        state.withLock { $0.countFrom = now }
    }

    func stop() {
        for socket in sockets.withLock({ $0 }) { shutdown(socket, Int32(SHUT_RDWR)) }
    }

    /// Waits up to 2 s for the last events of the load to arrive, then stops the watchers.
    func finish() async -> WatchedDelays {
        try? await Task.sleep(for: .seconds(2))
        stop()
        let result = state.withLock { state in
            WatchedDelays(
                perNode: nodes.indices.map { (nodes[$0], state.delays[$0], state.gaps[$0], state.repeats[$0]) })
        }
        try? await Task.sleep(for: .milliseconds(100))
        for socket in sockets.withLock({ $0 }) { close(socket) }
        return result
    }
}

/// The parts of an auction's `text/event-stream` the watchers measure, from the raw bytes of an
/// HTTP/1.1 response with a chunked body: each event's seq (`id:`) and, for bids, the decision
/// time (`"at"` in the data, RFC 3339 UTC with milliseconds, as the API writes it).
struct ServerSentEventReader {
    struct Event {
        var seq: Int64
        var bidAt: Int64?
    }

    private var headerDone = false
    private var raw: [UInt8] = []
    private var body: [UInt8] = []
    private var chunkLeft = 0

    mutating func feed(_ bytes: ArraySlice<UInt8>) -> [Event] {
        raw += bytes
        if !headerDone {
            guard let end = Self.find([13, 10, 13, 10], in: raw, from: 0) else { return [] }
            raw.removeFirst(end + 4)
            headerDone = true
        }
        // Chunked transfer coding: "size\r\n" + size bytes + "\r\n".
        var position = 0
        while position < raw.count {
            if chunkLeft > 0 {
                let take = min(chunkLeft, raw.count - position)
                body += raw[position..<position + take]
                position += take
                chunkLeft -= take
                if chunkLeft == 0 { chunkLeft = -2 }  // the CRLF after the data
                continue
            }
            if chunkLeft < 0 {
                let skip = min(-chunkLeft, raw.count - position)
                position += skip
                chunkLeft += skip
                continue
            }
            guard let lineEnd = Self.find([13, 10], in: raw, from: position) else { break }
            let sizeText = String(decoding: raw[position..<lineEnd], as: UTF8.self)
            chunkLeft = Int(sizeText.split(separator: ";").first ?? "", radix: 16) ?? 0
            position = lineEnd + 2
        }
        raw.removeFirst(position)
        var events: [Event] = []
        var start = 0
        while let end = Self.find([10, 10], in: body, from: start) {
            if let event = Self.parse(body[start..<end]) { events.append(event) }
            start = end + 2
        }
        body.removeFirst(start)
        return events
    }

    private static func parse(_ block: ArraySlice<UInt8>) -> Event? {
        var seq: Int64?
        var isBid = false
        var at: Int64?
        for line in block.split(separator: 10) {
            if line.starts(with: Array("id: ".utf8)) {
                seq = Int64(String(decoding: line.dropFirst(4), as: UTF8.self))
            } else if line.starts(with: Array("event: bid".utf8)) {
                isBid = true
            } else if line.starts(with: Array("data: ".utf8)),
                let key = find(Array("\"at\":\"".utf8), in: Array(line), from: 0)
            {
                let text = Array(line)[(key + 6)...].prefix(24)
                at = milliseconds(String(decoding: text, as: UTF8.self))
            }
        }
        guard let seq else { return nil }
        return Event(seq: seq, bidAt: isBid ? at : nil)
    }

    /// `2026-11-27T04:25:01.123Z` in milliseconds since 1970.
    static func milliseconds(_ text: String) -> Int64? {
        let digits = Array(text.utf8)
        guard digits.count >= 24, digits[23] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? { Int64(String(decoding: digits[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19), let milli = number(20..<23)
        else { return nil }
        // Days from the civil date (H. Hinnant's algorithm).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1_000 + milli
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var index = start
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0], haystack[index..<index + needle.count].elementsEqual(needle) {
                return index
            }
            index += 1
        }
        return nil
    }
}

/// A blocking TCP client socket, for the watchers' threads.
enum RawSocket {
    static func connect(host: String, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ChaosError("no socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw ChaosError("cannot connect to \(host):\(port)")
        }
        return fd
    }

    static func send(_ fd: Int32, _ text: String) throws {
        let bytes = Array(text.utf8)
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw ChaosError("send failed") }
            sent += count
        }
    }

    static func nowMilliseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000 + Int64(time.tv_nsec) / 1_000_000
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
                format: "%.2f× requests/s, %.2f× accepted bids/s",
                rows[a].requestsPerSecond / rows[b].requestsPerSecond,
                rows[a].acceptedPerSecond / max(rows[b].acceptedPerSecond, 1e-9))
        }
        var lines: [String] = []
        if let lot = ratio(1, 0) {
            lines.append("- Lot holding \(grouped(Double(command.scaleLotBids))) bids ÷ 1,000: \(lot)")
        }
        if let hot = ratio(4, 2) {
            lines.append("- Fresh hot lot, \(grouped(Double(command.scaleAuctions))) auctions ÷ 1,000: \(hot)")
        }
        if let uniform = ratio(5, 3) {
            lines.append(
                "- \(lots(command.auctions)), \(grouped(Double(command.scaleAuctions))) auctions ÷ 1,000: \(uniform)")
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
                format: "| %d | %@ | %@ | %.2f | %.2f | %d | %@ | %@ |\n", minute.minute,
                grouped(row.requestsPerSecond),
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
                    format: "- Last minute ÷ first, accepted bids/s: %.3f",
                    last.row.acceptedPerSecond
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
        text +=
            "\n" + lines.joined(separator: "\n") + """


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
