import Foundation

/// One row of the HTTP benchmark's report.
struct HttpBenchRow: Sendable {
    var design: String
    var load: String
    var requests = 0
    var accepted = 0
    var rejected = 0
    var failed = 0
    /// Failures by status ("503": n) and socket errors ("timeout": n).
    var failures: [String: Int] = [:]
    var requestsPerSecond = 0.0
    var acceptedPerSecond = 0.0
    var p50 = 0.0
    var p99 = 0.0
    var max = 0.0
    /// Where the CPU went while the test ran (percent of one core).
    var cpu = ""
    /// CPU used meanwhile by processes outside the test (percent of one core).
    var otherCPU = 0.0

    /// ArtPay only: p50 and p99 (ms) of the bids the nodes admitted, as the nodes measured them.
    var admittedP50: Double?
    var admittedP99: Double?

    var failureCount: Int { failures.values.reduce(0, +) }

    init(design: String, load: String) {
        self.design = design
        self.load = load
    }

    /// A row from an in-process load test.
    init(design: String, load: String, result: LoadResult, cpu: CPUUsage, cpuText: String) {
        self.design = design
        self.load = load
        requests = result.requests
        accepted = result.accepted
        rejected = result.rejected
        failed = result.failed
        if result.failed > 0 { failures["failed"] = result.failed }
        requestsPerSecond = result.requestsPerSecond
        acceptedPerSecond = result.acceptedPerSecond
        p50 = result.percentileMilliseconds(50)
        p99 = result.percentileMilliseconds(99)
        max = Double(result.latency.max) / 1_000
        self.cpu = cpuText
        otherCPU = cpu.other
    }
}

/// Runs one wrk per target with scripts/bench-http/bids.lua and sums what they report.
struct WrkLoad: Sendable {
    var wrk: String
    var script: String
    var targets: [String]
    var tokensFile: String
    var auctionsFile: String
    var boardFile: String
    var connections: Int
    var threads: Int
    var spread: Int
    var work: String
    /// Milliseconds each connection waits after an answer before its next request (0: none).
    var pace = 0
    /// Whether a 503's `Retry-After` is waited out before the next request, as the project's
    /// clients do (wrk's own connections resend at once).
    var honourRetryAfter = false

    /// Percentiles of the quantiles bids.lua prints: 0.1 … 98.9 by 0.1, then 99.00 … 99.99 by 0.01.
    static let quantilePercentiles: [Double] =
        (1...989).map { Double($0) / 10 } + (9_900...9_999).map { Double($0) / 100 }

    /// Runs the wrks for `seconds`; `label` names the logs, `runId` makes the bid ids unique.
    /// `serverPids` (called `serverName` in the report) are sampled for their CPU time.
    func run(
        seconds: Int, label: String, runId: String, children: BenchChildren, serverPids: [pid_t], serverName: String,
        design: String, load: String
    ) async throws -> HttpBenchRow {
        let script = try pace > 0 || honourRetryAfter ? delayedScript() : script
        let cpuBefore = CPUSample.take(servers: serverPids)
        var pids: [pid_t] = []
        var logs: [String] = []
        do {
            for (index, target) in targets.enumerated() {
                let log = "\(work)/wrk-\(label)-n\(index + 1).log"
                try? FileManager.default.removeItem(atPath: log)
                logs.append(log)
                pids.append(
                    try children.start(
                        "wrk", wrk,
                        [
                            "-t\(threads)", "-c\(connections)", "-d\(seconds)s", "--timeout", "20s", "-s", script,
                            target, "--", tokensFile, auctionsFile, boardFile, "\(runId)\(index + 1)", "\(spread)",
                            "\(index * connections)", "\(connections / threads)", "\(pace)",
                            honourRetryAfter ? "1" : "0",
                        ], log: log))
            }
        } catch {
            await children.stop(pids, grace: .seconds(1))
            throw error
        }
        let left = await children.waitForExit(pids, until: ContinuousClock.now.advanced(by: .seconds(seconds + 60)))
        if !left.isEmpty {
            await children.stop(left, grace: .seconds(1))
            throw ChaosError("wrk did not finish within \(seconds + 60) s (\(label)); logs in \(work)")
        }
        let cpu = CPUSample.take(servers: serverPids).usage(since: cpuBefore)

        var row = HttpBenchRow(design: design, load: load)
        var points: [(value: Double, weight: Double)] = []
        for log in logs {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("ARTPAY-WRK ") }),
                let report = try JSONSerialization.jsonObject(with: Data(line.dropFirst(11).utf8)) as? [String: Any]
            else {
                throw ChaosError("wrk gave no report (\(log)):\n\(text.suffix(2_000))")
            }
            func int(_ key: String) -> Int { (report[key] as? NSNumber)?.intValue ?? 0 }
            let requests = int("requests")
            let duration = Double(int("durationMicros")) / 1e6
            row.requests += requests
            row.accepted += int("accepted")
            row.rejected += int("rejected")
            row.failed += int("failed")
            for (status, count) in report["statuses"] as? [String: NSNumber] ?? [:] {
                row.failures[status, default: 0] += count.intValue
            }
            for (kind, count) in report["errors"] as? [String: NSNumber] ?? [:] where count.intValue > 0 {
                row.failures[kind, default: 0] += count.intValue
            }
            if duration > 0 {
                row.requestsPerSecond += Double(requests) / duration
                row.acceptedPerSecond += Double(int("accepted")) / duration
            }
            row.max = Swift.max(row.max, Double(int("latencyMax")) / 1_000)
            let quantiles = (report["quantiles"] as? [NSNumber] ?? []).map(\.doubleValue)
            guard quantiles.count == Self.quantilePercentiles.count else { continue }
            var previous = 0.0
            for (percentile, value) in zip(Self.quantilePercentiles, quantiles) {
                points.append((value, Double(requests) * (percentile - previous) / 100))
                previous = percentile
            }
            points.append((Double(int("latencyMax")), Double(requests) * (100 - previous) / 100))
        }
        (row.p50, row.p99) = (Self.percentile(50, of: points) / 1_000, Self.percentile(99, of: points) / 1_000)
        // This process is idle during a wrk run unless it watches the load (SSE watchers).
        row.cpu = cpu.text(servers: serverName, wrk: "wrk", harness: cpu.harness >= 5 ? "watchers (this process)" : nil)
        row.otherCPU = cpu.other
        return row
    }

    /// bids.lua with wrk's `delay()` hook added: a wait owed to a 503 first, otherwise PACE ms. wrk
    /// looks for the hook once, in its main Lua state, and then delays every request of every
    /// connection, so the undelayed script must not have it.
    private func delayedScript() throws -> String {
        let path = "\(work)/bids-delayed.lua"
        let text = try String(contentsOfFile: script, encoding: .utf8)
        let hook = """

            -- Added by the harness: a wait owed to a 503 (HONOUR_RETRY_AFTER), else PACE ms.
            function delay()
                if #retryWaits > 0 then return table.remove(retryWaits, 1) end
                return pace
            end

            """
        try (text + hook).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The `percentile` of weighted points (each wrk's quantiles, weighted by its request count).
    static func percentile(_ percentile: Double, of points: [(value: Double, weight: Double)]) -> Double {
        let sorted = points.sorted { $0.value < $1.value }
        let total = sorted.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return 0 }
        var cumulative = 0.0
        for point in sorted {
            cumulative += point.weight
            if cumulative >= total * percentile / 100 - 1e-9 { return point.value }
        }
        return sorted.last?.value ?? 0
    }
}

extension Duration {
    var benchSeconds: Double {
        let (whole, attoseconds) = components
        return Double(whole) + Double(attoseconds) / 1e18
    }
}
