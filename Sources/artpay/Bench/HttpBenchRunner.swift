import Foundation
import Gateway
import PostgresNIO
import Storage
import Synchronization

/// The phases of one `artpay bench http` run, one design at a time so each has the machine to
/// itself: nodes, then row-lock servers, then Redis servers, then the in-process runs.
final class HttpBenchRunner: Sendable {
    /// What the run was asked for (the command's options).
    struct Options: Sendable {
        var seconds: Int
        var warmup: Int
        var bidders: Int
        var auctions: Int
        var spread: Int?
        var designs: [HttpBenchCommand.Design]
        var wrk: String
        var redisServer: String
        var scripts: String?
        var admissionInFlight: Int?
        var honourRetryAfter = false
    }

    let command: Options
    let run: String
    let work: String
    let children: BenchChildren
    let base: PostgresClient.Configuration
    let databases: (nodes: String, rowlock: String, engine: String)
    let threads: Int
    let redisVersion = Mutex<String?>(nil)

    init(
        command: Options, run: String, work: String, children: BenchChildren,
        base: PostgresClient.Configuration, databases: (nodes: String, rowlock: String, engine: String), threads: Int
    ) {
        self.command = command
        self.run = run
        self.work = work
        self.children = children
        self.base = base
        self.databases = databases
        self.threads = threads
    }

    typealias Label = HttpBenchCommand.Label

    var binary: String { work + "/artpay" }
    var keyFile: String { work + "/jwt.pem" }
    var tokensFile: String { work + "/tokens.txt" }
    var hosts: [String] { (1...HttpBenchCommand.servers).map { "127.0.0.\($0)" } }

    func measure() async throws -> [HttpBenchRow] {
        let designs = command.designs
        try installBinary()
        let scripts = try scriptsDirectory()
        var rows: [HttpBenchRow] = []
        let users: HttpBenchUsers
        if designs.contains(.artpay) {
            let (artpayRows, nodeUsers) = try await measureArtPay(script: scripts + "/bids.lua")
            rows += artpayRows
            users = nodeUsers
        } else {
            try TokenAuthority.generatePrivateKeyPEM().write(toFile: keyFile, atomically: true, encoding: .utf8)
            users = try await HttpBenchSetup.mintedUsers(keyFile: keyFile, bidders: command.bidders, run: run)
            try writeTokens(users)
        }
        if designs.contains(.rowlock) {
            rows += try await measureRowLock(script: scripts + "/bids.lua")
        }
        if designs.contains(.redis) || designs.contains(.redisDirect) {
            rows += try await measureRedis(scripts: scripts, users: users, designs: designs)
        }
        if designs.contains(.engine) {
            rows += try await measureEngine()
        }
        return rows
    }

    /// Servers run a copy of this binary: a rebuild during the run cannot swap it under them.
    func installBinary() throws {
        try FileManager.default.copyItem(atPath: ChaosCommand.executablePath, toPath: binary)
        children.onCleanUp { [binary] in try? FileManager.default.removeItem(atPath: binary) }
    }

    // MARK: - ArtPay nodes

    private func measureArtPay(script: String) async throws -> ([HttpBenchRow], HttpBenchUsers) {
        let artpay = try await startArtPay()
        do {
            let rows = try await loadTests(
                design: Label.artpay, code: "a", script: script, targets: artpay.urls, serverPids: artpay.pids,
                serverName: "nodes", hot: artpay.hot, uniform: artpay.uniform)
            try await artpay.stop()
            return (rows, artpay.users)
        } catch {
            await artpay.cluster.cleanUp()
            throw error
        }
    }

    /// Three nodes running, with a seller, the bidders' tokens in `tokensFile`, a hot lot and
    /// `--auctions` lots of one sale in every node's read model. `prepare` runs on the nodes'
    /// database before the first node starts.
    func startArtPay(prepare: (() async throws -> Void)? = nil) async throws -> ArtPayBenchCluster {
        let nodes = try ChaosCluster.configure(
            count: HttpBenchCommand.servers, firstHost: 1, workDirectory: work,
            pg: (base.host ?? "127.0.0.1", base.port ?? 5432, base.username, databases.nodes), disableFencing: false)
        // Rate limits are already out of the way (100,000 a second per user); the request timeout
        // goes back to the node's default (15 s) instead of the chaos run's 4 s.
        for node in nodes {
            try Self.useDefaultRequestTimeout(node.configPath, admissionInFlight: command.admissionInFlight)
        }
        try await prepare?()
        let cluster = ChaosCluster(nodes: nodes, binary: binary, workDirectory: work, postgres: nil)
        children.onCleanUp { cluster.emergencyCleanUp() }
        do {
            for index in nodes.indices { try cluster.start(index) }
            say("bench http: starting 3 nodes (\(nodes.map(\.http).joined(separator: ", ")))")
            try await LocalNetwork.waitUntil("every node is ready and sees 3 members", seconds: 120) {
                if let crashed = cluster.reapCrashed().first {
                    say("bench http: node \(nodes[crashed].id) exited; see \(nodes[crashed].logPath)")
                }
                return await cluster.converged()
            }
            let urls = nodes.map(\.http)
            let users = try await HttpBenchSetup.users(
                nodes: urls, bidders: command.bidders, run: run,
                admin: (username: "chaos-admin", password: "chaos-admin-password"))
            try writeTokens(users)
            let hot = "\(run)-a-hot"
            let sale = "\(run)-sale"
            let uniform = (0..<command.auctions).map { "\(run)-a-u\($0)" }
            say("bench http: \(command.bidders) bidders logged in; creating \(uniform.count + 1) auctions")
            try await HttpBenchSetup.createAuctions(nodes: urls, sellerToken: users.sellerToken, ids: [hot], sale: nil)
            try await HttpBenchSetup.createAuctions(
                nodes: urls, sellerToken: users.sellerToken, ids: uniform, sale: sale)
            try await HttpBenchSetup.waitForReadModels(
                nodes: urls, hot: hot, sale: sale, count: uniform.count, seconds: 60)
            let pids = nodes.indices.compactMap { index -> pid_t? in
                if case .running(let pid) = cluster.state(index) { return pid }
                return nil
            }
            return ArtPayBenchCluster(
                cluster: cluster, nodes: nodes, urls: urls, pids: pids, users: users, hot: hot, sale: sale,
                uniform: uniform)
        } catch {
            await cluster.cleanUp()
            throw error
        }
    }

    static func useDefaultRequestTimeout(_ path: String, admissionInFlight: Int?) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard var config = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            var http = config["http"] as? [String: Any]
        else { throw ChaosError("unexpected node configuration \(path)") }
        http.removeValue(forKey: "requestTimeoutSeconds")
        if let admissionInFlight { http["admission"] = ["maxInFlight": admissionInFlight] }
        config["http"] = http
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: path))
    }

    // MARK: - Row-lock servers

    private func measureRowLock(script: String) async throws -> [HttpBenchRow] {
        let hot = "\(run)-r-hot"
        let uniform = (0..<command.auctions).map { "\(run)-r-u\($0)" }
        var configuration = base
        configuration.database = databases.rowlock
        try await PostgresClient.withRunning(configuration) { client in
            try await RowLockBaseline.createTables(client)
            try await RowLockBaseline.createAuctions(client, ids: [hot] + uniform)
        }
        let perServer = command.bidders / HttpBenchCommand.servers
        let pg = [
            "--pg-host", base.host ?? "127.0.0.1", "--pg-port", "\(base.port ?? 5432)", "--pg-user", base.username,
            "--pg-database", databases.rowlock,
        ]
        let servers = try await startBaselineServers(
            name: "rowlock", arguments: ["--design", "rowlock", "--pool", "\(perServer + 3)"] + pg)
        do {
            let rows = try await loadTests(
                design: Label.rowlock, code: "r", script: script, targets: servers.urls, serverPids: servers.pids,
                serverName: "servers",
                hot: hot, uniform: uniform)
            await children.stop(servers.pids)
            return rows
        } catch {
            await children.stop(servers.pids, grace: .seconds(2))
            throw error
        }
    }

    // MARK: - Redis

    private func measureRedis(scripts: String, users: HttpBenchUsers, designs: [HttpBenchCommand.Design])
        async throws -> [HttpBenchRow]
    {
        let directory = work + "/redis"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let redis = try await RedisBids.startServer(
            binary: command.redisServer, directory: directory, children: children)
        let pool = RedisPool(host: "127.0.0.1", port: redis.port, size: 8)
        var rows: [HttpBenchRow] = []
        do {
            if let info = try await pool.call(["INFO", "server"]).string,
                let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("redis_version:") })
            {
                redisVersion.withLock { $0 = String(line.dropFirst("redis_version:".count)) }
            }
            let sha = try await RedisBids.loadScript(pool, path: scripts + "/place-bid.redis.lua")
            say("bench http: redis-server on 127.0.0.1:\(redis.port) (appendfsync always), script \(sha)")
            if designs.contains(.redis) {
                let hot = "\(run)-x-hot"
                let uniform = (0..<command.auctions).map { "\(run)-x-u\($0)" }
                try await RedisBids.createAuctions(pool, ids: [hot] + uniform, seller: users.sellerId)
                let servers = try await startBaselineServers(
                    name: "redis",
                    arguments: [
                        "--design", "redis", "--pool", "8", "--redis-port", "\(redis.port)", "--redis-sha", sha,
                    ])
                do {
                    rows += try await loadTests(
                        design: Label.redis, code: "x", script: scripts + "/bids.lua", targets: servers.urls,
                        serverPids: servers.pids + [redis.pid], serverName: "servers + redis-server", hot: hot,
                        uniform: uniform)
                    await children.stop(servers.pids)
                } catch {
                    await children.stop(servers.pids, grace: .seconds(2))
                    throw error
                }
            }
            if designs.contains(.redisDirect) {
                let hot = "\(run)-d-hot"
                let uniform = (0..<command.auctions).map { "\(run)-d-u\($0)" }
                try await RedisBids.createAuctions(pool, ids: [hot] + uniform, seller: users.sellerId)
                for (load, ids) in [("1 hot lot", [hot]), (HttpBenchCommand.lots(command.auctions), uniform)] {
                    let before = CPUSample.take(servers: [redis.pid])
                    let result = await RedisBids.runDirect(
                        pool, sha: sha, ids: ids, bidders: command.bidders, duration: .seconds(command.seconds),
                        run: "\(run)-d\(ids.count)")
                    let cpu = CPUSample.take(servers: [redis.pid]).usage(since: before)
                    let row = HttpBenchRow(
                        design: Label.redisDirect, load: load, result: result,
                        cpu: cpu,
                        cpuText: cpu.text(servers: "redis-server", wrk: nil, harness: "bidders (this process)"))
                    say(HttpBenchCommand.line(row))
                    rows.append(row)
                }
            }
        } catch {
            await pool.close()
            await children.stop([redis.pid], grace: .seconds(2))
            throw error
        }
        await pool.close()
        await children.stop([redis.pid])
        return rows
    }

    // MARK: - In-process engine

    private func measureEngine() async throws -> [HttpBenchRow] {
        var configuration = base
        configuration.database = databases.engine
        configuration.options.maximumConnections = command.bidders + 8
        let (bidders, seconds, auctions, run) = (command.bidders, command.seconds, command.auctions, run)
        return try await PostgresClient.withRunning(configuration) { client in
            let store = PostgresEventStore(client: client)
            try await store.migrate()
            var rows: [HttpBenchRow] = []
            for (load, count) in [("1 hot lot", 1), (HttpBenchCommand.lots(auctions), auctions)] {
                let before = CPUSample.take(servers: [])
                let engine = try await EngineBench.run(
                    store: store, run: "\(run)-e\(count)", auctions: count, bidders: bidders,
                    duration: .seconds(seconds))
                let cpu = CPUSample.take(servers: []).usage(since: before)
                let row = HttpBenchRow(
                    design: Label.engine, load: load, result: engine.result,
                    cpu: cpu, cpuText: cpu.text(servers: nil, wrk: nil, harness: "engine + bidders (this process)"))
                say(HttpBenchCommand.line(row) + "; \(engine.note)")
                rows.append(row)
            }
            return rows
        }
    }

    // MARK: - Shared

    /// The hot-lot and uniform tests of one design: warm-up, then the measured run, same wrks.
    func loadTests(
        design: String, code: String, script: String, targets: [String], serverPids: [pid_t], serverName: String,
        hot: String,
        uniform: [String]
    ) async throws -> [HttpBenchRow] {
        var rows: [HttpBenchRow] = []
        let tests = [("1 hot lot", "h", [hot]), (HttpBenchCommand.lots(command.auctions), "u", uniform)]
        for (load, loadCode, ids) in tests {
            rows.append(
                try await loadTest(
                    design: design, load: load, code: code + loadCode, script: script, targets: targets,
                    serverPids: serverPids, serverName: serverName, ids: ids))
        }
        return rows
    }

    /// One load test: `--warmup` seconds of wrk load on `ids`, then `seconds` measured. `pace`
    /// (milliseconds) makes each connection wait that long after an answer before its next bid;
    /// `onMeasure` runs when the measured seconds start. Tests with the same `board` share the
    /// price board (on many lots the board learns only from accepted bids, so lots that already
    /// have bids need the board that saw them).
    func loadTest(
        design: String, load: String, code: String, script: String, targets: [String], serverPids: [pid_t],
        serverName: String, ids: [String], seconds: Int? = nil, pace: Int = 0, board: String? = nil,
        onMeasure: (() -> Void)? = nil
    ) async throws -> HttpBenchRow {
        let perServer = command.bidders / HttpBenchCommand.servers
        let auctionsFile = "\(work)/\(code).auctions"
        let boardFile = "\(work)/\(board ?? code).board"
        try (ids.joined(separator: "\n") + "\n").write(toFile: auctionsFile, atomically: true, encoding: .utf8)
        if !FileManager.default.fileExists(atPath: boardFile) {
            try Data(count: 8 * ids.count).write(to: URL(fileURLWithPath: boardFile))
        }
        let wrk = WrkLoad(
            wrk: command.wrk, script: script, targets: targets, tokensFile: tokensFile, auctionsFile: auctionsFile,
            boardFile: boardFile, connections: perServer, threads: threads,
            spread: command.spread ?? command.bidders, work: work, pace: pace,
            honourRetryAfter: command.honourRetryAfter)
        if command.warmup > 0 {
            let warm = try await wrk.run(
                seconds: command.warmup, label: "\(code)-warmup", runId: "\(run)-\(code)w",
                children: children, serverPids: serverPids, serverName: serverName, design: design, load: load)
            say("  warm-up: " + HttpBenchCommand.line(warm))
        }
        let before = design == Label.artpay ? await ServerLatency.scrape(targets) : nil
        onMeasure?()
        var row = try await wrk.run(
            seconds: seconds ?? command.seconds, label: code, runId: "\(run)-\(code)m",
            children: children, serverPids: serverPids, serverName: serverName, design: design, load: load)
        if let before {
            let admitted = await ServerLatency.scrape(targets).since(before)
            (row.admittedP50, row.admittedP99) = (admitted.quantile(0.5), admitted.quantile(0.99))
        }
        say(HttpBenchCommand.line(row))
        return row
    }

    /// Starts one `artpay bench baseline-server` per host; returns once each answers /health/ready.
    private func startBaselineServers(name: String, arguments: [String]) async throws -> (
        urls: [String], pids: [pid_t]
    ) {
        var urls: [String] = []
        var pids: [pid_t] = []
        do {
            for (index, host) in hosts.enumerated() {
                let port = try LocalNetwork.freePort(host)
                urls.append("http://\(host):\(port)")
                pids.append(
                    try children.start(
                        "\(name)-\(index + 1)", binary,
                        [
                            "bench", "baseline-server", "--host", host, "--port", "\(port)", "--signing-key-file",
                            keyFile,
                        ] + arguments, log: "\(work)/\(name)-\(index + 1).log"))
            }
            say("bench http: starting 3 \(name) servers (\(urls.joined(separator: ", ")))")
            try await LocalNetwork.waitUntil("every \(name) server is ready", seconds: 30) {
                for (url, pid) in zip(urls, pids) {
                    if children.hasExited(pid) { return false }
                    guard (try? await ChaosCluster.status(url + "/health/ready")) == 200 else { return false }
                }
                return true
            }
        } catch {
            await children.stop(pids, grace: .seconds(2))
            throw ChaosError("\(name) servers did not start (\(error)); logs in \(work)/\(name)-*.log")
        }
        return (urls, pids)
    }

    func writeTokens(_ users: HttpBenchUsers) throws {
        try (users.bidderTokens.joined(separator: "\n") + "\n").write(
            toFile: tokensFile, atomically: true, encoding: .utf8)
    }

    /// scripts/bench-http: `--scripts`, or under the current directory, or near the binary.
    func scriptsDirectory() throws -> String {
        let executable = URL(fileURLWithPath: ChaosCommand.executablePath).deletingLastPathComponent()
        let candidates =
            [command.scripts].compactMap { $0 } + [
                FileManager.default.currentDirectoryPath + "/scripts/bench-http",
                executable.appendingPathComponent("../../scripts/bench-http").path,
                executable.appendingPathComponent("../../../scripts/bench-http").path,
            ]
        for candidate in candidates
        where FileManager.default.fileExists(atPath: candidate + "/bids.lua")
            && FileManager.default.fileExists(atPath: candidate + "/place-bid.redis.lua")
        {
            return candidate
        }
        throw ChaosError(
            "scripts/bench-http not found (looked in \(candidates.joined(separator: ", "))); use --scripts")
    }
}

/// The nodes of an ArtPay benchmark run and what was set up on them.
struct ArtPayBenchCluster: Sendable {
    let cluster: ChaosCluster
    let nodes: [ChaosCluster.Node]
    let urls: [String]
    let pids: [pid_t]
    let users: HttpBenchUsers
    let hot: String
    let sale: String
    let uniform: [String]

    /// Stops the nodes; fails when one of them exited on its own during the run.
    func stop() async throws {
        if let crashed = cluster.reapCrashed().first {
            await cluster.cleanUp()
            throw ChaosError("node \(nodes[crashed].id) exited during the run; see \(nodes[crashed].logPath)")
        }
        await cluster.stopAll()
    }
}
