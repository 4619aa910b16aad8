import ArgumentParser
import Foundation
import Gateway
import PostgresNIO
import Storage

/// `artpay bench http`: the bid path end to end over HTTP, in one run on one machine — three
/// `artpay node` processes, then the same HTTP stack deciding bids with a row lock in PostgreSQL,
/// then with a Redis + Lua script — all driven by the same wrk load, next to the in-process engine.
struct HttpBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "http",
        abstract: "Bids end to end over HTTP: ArtPay nodes vs row-lock and Redis + Lua servers, one wrk load.",
        discussion: """
            Measures, in one run: (1) three release `artpay node` processes on PostgreSQL \
            (127.0.0.1-3), set up over the API (admin, a seller, --bidders bidders with tokens, one hot \
            lot and --auctions lots); (2) three `artpay bench baseline-server --design rowlock` (the same \
            Hummingbird route and Gateway middleware, one `SELECT … FOR UPDATE` transaction per bid); \
            (3) three `baseline-server --design redis` in front of a private redis-server \
            (appendfsync always) running scripts/bench-http/place-bid.redis.lua; and, without HTTP, \
            (4) Redis + Lua called directly and (5) the in-process engine (`artpay bench`'s EngineBench).

            Load: one wrk per server with scripts/bench-http/bids.lua; --bidders closed-loop bidders \
            split evenly over the servers, one HTTP connection each (`wrk -t1 -c21` by default). wrk's Lua \
            API does not say which connection a request goes out on, so the bidders of a wrk thread take \
            turns per request (each has about one bid in flight); with --wrk-threads equal to the \
            connections per server, each connection is one fixed bidder, at about twice wrk's CPU per \
            request. A bid offers the minimum on a price board shared by every connection (the highest \
            minimum any answer showed) plus 0 to --spread increments. Each test: --warmup seconds \
            unmeasured, then --seconds measured; a hot-lot test (every bid on one lot) and a uniform test (a \
            random lot of --auctions).

            Needs wrk and redis-server (Debian packages) and a PostgreSQL that may create databases; \
            `scripts/bench http` installs them, builds release and brings a throwaway PostgreSQL. \
            Every process started is stopped by pid at the end, also on failure or Ctrl-C.
            """)

    enum Design: String, CaseIterable, Sendable {
        case artpay, rowlock, redis
        case redisDirect = "redis-direct"
        case engine
    }

    @OptionGroup var postgres: PostgresOptions

    @Option(help: "Seconds each load test is measured.") var seconds = 10
    @Option(help: "Seconds of load before each measurement, not counted.") var warmup = 2
    @Option(help: "Bidders, i.e. HTTP connections, split evenly over the 3 servers (one wrk each).") var bidders = 63
    @Option(help: "wrk threads per server (default 1; one per connection makes each connection a fixed bidder).")
    var wrkThreads: Int?
    @Option(help: "Lots in the uniform test (at most 1,000).") var auctions = 1_000
    @Option(help: "A bid offers the board's minimum plus 0 to this many increments (default: --bidders).")
    var spread: Int?
    @Option(help: "Which to measure, comma-separated: artpay, rowlock, redis, redis-direct, engine.")
    var designs = "artpay,rowlock,redis,redis-direct,engine"
    @Option(help: "Also write the report as Markdown to this file.") var markdown: String?
    @Option(help: "Directory for configurations, logs and wrk output (default: a new temporary one).")
    var workDir: String?
    @Flag(help: "Keep the work directory after a successful run.") var keep = false
    @Option(help: "The wrk binary.") var wrk = "/usr/bin/wrk"
    @Option(help: "The redis-server binary.") var redisServer = "/usr/bin/redis-server"
    @Option(help: "Directory holding bids.lua and place-bid.redis.lua (default: scripts/bench-http).")
    var scripts: String?
    @Option(
        help:
            "Nodes' admission limit, requests in flight (http.admission.maxInFlight; 0 turns it off; default: the node's)."
    )
    var admissionInFlight: Int?
    @Flag(
        help: """
            Bidders wait out a 503's Retry-After before their next bid, as the project's CLI and client do \
            (by default they resend at once, like wrk).
            """)
    var honourRetryAfter = false
    @Flag(
        help: """
            ArtPay only, instead of the design comparison: bids/s on a lot holding --scale-lot-bids bids vs one \
            holding 1,000, on a cluster of --scale-auctions auctions vs 1,000, idle CPU, resident memory, and the \
            delay from a bid to an SSE watcher on every node (also at half of the hot lot's peak).
            """)
    var scale = false
    @Option(help: "Bids the large lot holds before --scale measures it.") var scaleLotBids = 100_000
    @Option(help: "Auctions the cluster holds in the second half of --scale.") var scaleAuctions = 100_000
    @Option(
        help: """
            ArtPay only: this many one-minute runs on the uniform lots at about half of their peak, with each \
            node's resident memory after every minute (--scale and --soak-minutes exclude each other).
            """)
    var soakMinutes: Int?

    static let servers = 3

    var selected: [Design] { designs.split(separator: ",").compactMap { Design(rawValue: String($0)) } }

    func validate() throws {
        guard seconds > 0, warmup >= 0, bidders > 0, (1...1_000).contains(auctions) else {
            throw ValidationError("--seconds and --bidders must be positive, --auctions 1 to 1,000")
        }
        guard bidders % Self.servers == 0 else { throw ValidationError("--bidders must be a multiple of 3") }
        let perServer = bidders / Self.servers
        if let wrkThreads, wrkThreads < 1 || perServer % wrkThreads != 0 {
            throw ValidationError("--wrk-threads must divide the \(perServer) connections per server")
        }
        for name in designs.split(separator: ",") where Design(rawValue: String(name)) == nil {
            throw ValidationError("unknown design '\(name)' (artpay, rowlock, redis, redis-direct, engine)")
        }
        if scale, soakMinutes != nil { throw ValidationError("--scale and --soak-minutes exclude each other") }
        if let soakMinutes, soakMinutes < 1 { throw ValidationError("--soak-minutes must be positive") }
        guard scaleLotBids >= 1_000, scaleAuctions >= auctions + 4 else {
            throw ValidationError("--scale-lot-bids at least 1,000; --scale-auctions above --auctions + 3")
        }
        let http = scale || soakMinutes != nil || selected.contains { [.artpay, .rowlock, .redis].contains($0) }
        if http, !FileManager.default.isExecutableFile(atPath: wrk) {
            throw ValidationError("\(wrk) not found: apt-get install wrk (scripts/bench http does)")
        }
        let redis = selected.contains { [.redis, .redisDirect].contains($0) }
        if redis, !FileManager.default.isExecutableFile(atPath: redisServer) {
            throw ValidationError("\(redisServer) not found: apt-get install redis-server (scripts/bench http does)")
        }
    }

    func run() async throws {
        let run = "r" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let work = workDir ?? NSTemporaryDirectory() + "artpay-bench-http-\(run)"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let children = BenchChildren()
        let interrupt = children.killAllOnInterrupt()
        defer { for source in interrupt { source.cancel() } }
        let perServer = bidders / Self.servers
        let threads = wrkThreads ?? 1
        say(
            "bench http: run \(run), \(selected.map(\.rawValue).joined(separator: ",")), \(bidders) bidders "
                + "(\(perServer) connections per server, wrk -t\(threads) -c\(perServer)), \(warmup) s warm-up + "
                + "\(seconds) s per test, work dir \(work)")

        let base = postgres.configuration(maximumConnections: 4)
        let databases = ["nodes", "rowlock", "engine"].map { "bench_http_\(run)_\($0)" }
        let server = try await PostgresClient.withRunning(base) { client in
            for database in databases {
                try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(database)"))
            }
            return try await Self.describe(client)
        }
        let options = HttpBenchRunner.Options(
            seconds: seconds, warmup: warmup, bidders: bidders, auctions: auctions, spread: spread, designs: selected,
            wrk: wrk, redisServer: redisServer, scripts: scripts, admissionInFlight: admissionInFlight,
            honourRetryAfter: honourRetryAfter)
        let runner = HttpBenchRunner(
            command: options, run: run, work: work, children: children, base: base,
            databases: (databases[0], databases[1], databases[2]), threads: threads)
        let report: String
        do {
            if scale {
                let scaled = try await runner.measureScale(
                    script: try runner.scriptsDirectory() + "/bids.lua", lotBids: scaleLotBids,
                    clusterAuctions: scaleAuctions)
                report = Self.scaleMarkdown(scaled, command: self, run: run, postgres: server)
            } else if let soakMinutes {
                let soak = try await runner.measureSoak(
                    script: try runner.scriptsDirectory() + "/bids.lua", minutes: soakMinutes)
                report = Self.soakMarkdown(
                    peak: soak.peak, minutes: soak.minutes, command: self, run: run, postgres: server)
            } else {
                let rows = try await runner.measure()
                report = Self.markdown(
                    rows: rows, command: self, run: run, threads: threads, postgres: server,
                    redis: runner.redisVersion.withLock { $0 })
            }
        } catch {
            children.killAll()
            await Self.drop(databases, base)
            say("bench http: failed: \(error)\nbench http: logs in \(work)")
            throw ExitCode(2)
        }
        await Self.drop(databases, base)
        print("\n" + report)
        if let markdown { try report.write(toFile: markdown, atomically: true, encoding: .utf8) }
        try? FileManager.default.removeItem(atPath: work + "/artpay")
        if keep || workDir != nil {
            say("bench http: logs and wrk output in \(work)")
        } else {
            try? FileManager.default.removeItem(atPath: work)
        }
    }

    // MARK: - Report

    static func markdown(
        rows: [HttpBenchRow], command: HttpBenchCommand, run: String, threads: Int, postgres: String, redis: String?
    ) -> String {
        var text = """
            | design | load | requests/s | accepted bids/s | p50 ms | p99 ms | max ms | failures | CPU, % of one core |
            | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |

            """
        for row in rows {
            let failures =
                row.failureCount == 0
                ? "0"
                : "\(row.failureCount) ("
                    + row.failures.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ")
                    + ")"
            text += String(
                format: "| %@ | %@ | %@ | %@ | %.2f | %.2f | %.1f | %@ | %@ |\n", row.design, row.load,
                grouped(row.requestsPerSecond), grouped(row.acceptedPerSecond), row.p50, row.p99, row.max, failures,
                row.cpu)
        }
        func find(_ design: String, _ hot: Bool) -> HttpBenchRow? {
            rows.first { $0.design == design && ($0.load == "1 hot lot") == hot }
        }
        var ratios: [String] = []
        for (other, name) in [(Label.rowlock, "row-lock"), (Label.redis, "Redis + Lua")] {
            let parts = [true, false].compactMap { hot -> String? in
                guard let artpay = find(Label.artpay, hot), let baseline = find(other, hot),
                    baseline.acceptedPerSecond > 0
                else { return nil }
                return String(
                    format: "%@ %.2f×", hot ? "1 hot lot" : lots(command.auctions),
                    artpay.acceptedPerSecond / baseline.acceptedPerSecond)
            }
            if !parts.isEmpty {
                ratios.append("- ArtPay ÷ \(name) over HTTP, accepted bids/s: \(parts.joined(separator: "; "))")
            }
        }
        let inProcess = [true, false].compactMap { hot -> String? in
            guard let artpay = find(Label.artpay, hot), let engine = find(Label.engine, hot),
                engine.requestsPerSecond > 0
            else { return nil }
            return String(
                format: "%@ %.3f (%.1f%%)", hot ? "1 hot lot" : lots(command.auctions),
                artpay.requestsPerSecond / engine.requestsPerSecond,
                100 * artpay.requestsPerSecond / engine.requestsPerSecond)
        }
        if !inProcess.isEmpty {
            ratios.append(
                "- ArtPay over HTTP ÷ engine in-process, requests/s: \(inProcess.joined(separator: "; "))")
        }
        text += "\n" + ratios.joined(separator: "\n") + (ratios.isEmpty ? "" : "\n")
        if let busiest = rows.max(by: { $0.otherCPU < $1.otherCPU }), busiest.otherCPU >= 20 {
            text += String(
                format: "\n**Other processes used up to %.0f%% of a core during the tests (\"other\" above):** "
                    + "these figures are from a busy machine; compare rows of a quiet run.\n", busiest.otherCPU)
        }
        let perServer = command.bidders / servers
        let spread = command.spread ?? command.bidders
        let cores = ProcessInfo.processInfo.activeProcessorCount
        text += """

            Run \(run), \(Date().formatted(.iso8601)), \(cores) cores. \(command.bidders) closed-loop bidders: over \
            HTTP, \(command.bidders) keep-alive connections, \(perServer) per server, one wrk per server \
            (`wrk -t\(threads) -c\(perServer) --timeout 20s -s scripts/bench-http/bids.lua`); in-process, \
            \(command.bidders) tasks. \(command.warmup) s warm-up (not counted), then \(command.seconds) s per test. \
            A bid offers the minimum on a price board shared by all bidders plus 0–\(spread) increments. \
            Requests/s counts every answer; accepted bids/s the 201s; failures are answers other than 201 and 422, \
            and socket errors. Latency over HTTP: the three wrks' distributions merged (each wrk's \
            1,089 quantiles weighted by its requests); max: the largest. CPU: user + system time, in percent of one \
            core, during the measured seconds, of the servers under test (nodes, baseline servers, redis-server), \
            of every PostgreSQL process, of the wrks, of this process (in-process rows) and of everything else on \
            the machine ("other"). PostgreSQL \(postgres)\
            \(redis.map { "; Redis \($0), appendonly yes, appendfsync always" } ?? "").

            Command: `artpay \(CommandLine.arguments.dropFirst().joined(separator: " "))`

            """
        return text
    }

    static func line(_ row: HttpBenchRow) -> String {
        String(
            format: "%@, %@: %@ requests/s, %@ accepted bids/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms, "
                + "%d rejected, %d failures%@; CPU %@",
            row.design, row.load, grouped(row.requestsPerSecond), grouped(row.acceptedPerSecond), row.p50, row.p99,
            row.max, row.rejected, row.failureCount,
            row.admittedP99.map {
                String(
                    format: " (%@); admitted bids p50 %.1f ms, p99 %.1f ms (nodes' histogram)",
                    row.failures.map { "\($0.key): \($0.value)" }.sorted().joined(separator: ", "),
                    row.admittedP50 ?? 0, $0)
            } ?? "",
            row.cpu)
    }

    static func lots(_ count: Int) -> String {
        "\(grouped(Double(count))) lots"
    }

    static func grouped(_ value: Double) -> String {
        Int(value.rounded()).formatted(.number.grouping(.automatic).locale(Locale(identifier: "en_US")))
    }

    enum Label {
        static let artpay = "ArtPay, 3 nodes, HTTP"
        static let rowlock = "row-lock, 3 servers, HTTP"
        static let redis = "Redis + Lua, 3 servers, HTTP"
        static let redisDirect = "Redis + Lua, direct (no HTTP)"
        static let engine = "engine in-process (no HTTP)"
    }

    // MARK: - PostgreSQL

    static func describe(_ client: PostgresClient) async throws -> String {
        var parts: [String] = []
        for setting in ["server_version", "synchronous_commit"] {
            for try await value in try await client.query(
                PostgresQuery(unsafeSQL: "SELECT current_setting('\(setting)')")
            )
            .decode(String.self) {
                parts.append(setting == "server_version" ? value : "\(setting)=\(value)")
            }
        }
        return parts.joined(separator: ", ")
    }

    static func drop(_ databases: [String], _ base: PostgresClient.Configuration) async {
        _ = try? await PostgresClient.withRunning(base) { client in
            for database in databases {
                _ = try? await client.query(
                    PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(database) WITH (FORCE)"))
            }
        }
    }
}
