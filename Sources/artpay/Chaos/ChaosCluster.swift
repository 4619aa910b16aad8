import ArtPayClient
import AuctionCore
import Foundation
import Gateway
import Node
import Synchronization

/// The `artpay node` processes of a chaos run, and the faults done to them: kill -9 and restart,
/// SIGSTOP/SIGCONT, a network partition of one node (nftables rules on the loopback addresses this
/// run set up, in a table of its own), a PostgreSQL restart. Every process it starts it ends, by
/// pid; every rule it adds it deletes — also when the run is interrupted (`cleanUp`).
final class ChaosCluster: Sendable {
    struct Node: Sendable {
        var index: Int
        var id: String
        var host: String
        var clusterPort: Int
        var httpPort: Int
        var configPath: String
        var logPath: String
        var http: String { "http://\(host):\(httpPort)" }
    }

    enum State: Sendable, Equatable {
        case running(pid: Int32)
        case paused(pid: Int32)
        case killed
    }

    let nodes: [Node]
    let binary: String
    let workDirectory: String
    let postgres: (bin: String, dataDirectory: String)?
    private let states: Mutex<[State]>
    /// The sandbox payment provider every node pays through (an outside service: never faulted
    /// by the nemesis except with `psp-outage`).
    let provider: (host: String, port: Int)?
    static let providerKey = "sk_test_chaos"
    static let webhookSecret = "whsec_chaos"
    private let providerPID = Mutex<pid_t?>(nil)
    var providerURL: String { provider.map { "http://\($0.host):\($0.port)" } ?? "" }
    private let partitionTable: String
    private let partitioned = Mutex<Int?>(nil)

    /// The nodes' `--log-level` (`info` adds membership changes and shard acquisitions and releases).
    let nodeLogLevel: String

    init(
        nodes: [Node], binary: String, workDirectory: String, postgres: (bin: String, dataDirectory: String)?,
        provider: (host: String, port: Int)? = nil, nodeLogLevel: String = "notice"
    ) {
        self.provider = provider
        self.nodeLogLevel = nodeLogLevel
        self.nodes = nodes
        self.binary = binary
        self.workDirectory = workDirectory
        self.postgres = postgres
        self.states = Mutex(Array(repeating: .killed, count: nodes.count))
        self.partitionTable = "artpay_chaos_\(getpid())"
    }

    /// Writes each node's configuration: PostgreSQL `database`, a shared secret and signing key, a
    /// bootstrap admin, rate limits out of the workload's way, a short request timeout.
    static func configure(
        count: Int, firstHost: Int, workDirectory: String,
        pg: (host: String, port: Int, user: String, database: String),
        disableFencing: Bool, provider: (host: String, port: Int)? = nil, freshKeys: Bool = false
    ) throws -> [Node] {
        // Without a provider the nodes run no settlement driver (sold lots stay due).
        let payments =
            provider.map {
                """
                "payments": { "provider": { "url": "http://\($0.host):\($0.port)", "secretKey": "\(providerKey)", "timeoutSeconds": 2 },
                                "webhookSecrets": ["\(webhookSecret)"], "paymentDeadlineSeconds": 15, "secondChanceWindowSeconds": 15 },
                """
            } ?? ""

        let keyPath = workDirectory + "/jwt.pem"
        try TokenAuthority.generatePrivateKeyPEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
        var nodes: [Node] = []
        for index in 0..<count {
            let host = "127.0.0.\(firstHost + index)"
            nodes.append(
                Node(
                    index: index, id: "chaos-\(index + 1)", host: host, clusterPort: try LocalNetwork.freePort(host),
                    httpPort: try LocalNetwork.freePort(host),
                    configPath: "\(workDirectory)/node-\(index + 1).json",
                    logPath: "\(workDirectory)/node-\(index + 1).log"))
        }
        let seeds = nodes.map { "\"\($0.host):\($0.clusterPort)\"" }.joined(separator: ", ")
        let tls = try ClusterCertificates.writeLocalCluster(
            nodes.map { (NodeID(rawValue: $0.id)!, $0.host) }, into: workDirectory)
        for node in nodes {
            let config = """
                {
                  "node": { "id": "\(node.id)" },
                  "cluster": { "host": "\(node.host)", "port": \(node.clusterPort), "seeds": [\(seeds)], "secret": "chaos-run-cluster-secret",
                               "tls": \(ClusterCertificates.configJSON(authority: tls.authority, tls.nodes[NodeID(rawValue: node.id)!]!)) },
                  "http": { "host": "\(node.host)", "port": \(node.httpPort), "requestTimeoutSeconds": 4,
                            "rateLimit": { "capacity": 100000, "refillPerSecond": 100000 } },
                  "store": { "kind": "postgres", "postgres": { "host": "\(pg.host)", "port": \(pg.port), "user": "\(pg.user)", "database": "\(pg.database)" } },
                  "auth": { "signingKeyFile": "\(keyPath)", "passwordCost": 4, "admin": { "username": "chaos-admin", "password": "chaos-admin-password" } },
                  \(payments)
                  "debug": { "unsafeDisableFencing": \(disableFencing), "unsafeFreshIdempotencyKeys": \(freshKeys) }
                }
                """
            try config.write(toFile: node.configPath, atomically: true, encoding: .utf8)
        }
        return nodes
    }

    // MARK: - Processes

    /// Starts node `index`. `ARTPAY_NODE_WRAPPER` (an absolute path, for profiling: a script that
    /// sets up a profiler and `exec`s its arguments, so the pid stays the node's) runs the node
    /// through that program.
    func start(_ index: Int) throws {
        let node = nodes[index]
        let arguments = ["node", "--config", node.configPath, "--log-level", nodeLogLevel]
        let wrapper = ProcessInfo.processInfo.environment["ARTPAY_NODE_WRAPPER"].flatMap { $0.isEmpty ? nil : $0 }
        let pid = try Spawn.start(
            wrapper ?? binary, wrapper == nil ? arguments : [binary] + arguments, logPath: node.logPath)
        states.withLock { $0[index] = .running(pid: pid) }
        try "\(pid)\n".write(toFile: "\(workDirectory)/node-\(index + 1).pid", atomically: true, encoding: .utf8)
    }

    func state(_ index: Int) -> State { states.withLock { $0[index] } }

    /// Starts the sandbox provider with `faults` (its JSON), delivering webhooks to every node.
    func startProvider(faults: String, seed: UInt64) throws {
        guard let provider else { return }
        var arguments = [
            "psp", "--host", provider.host, "--port", "\(provider.port)", "--secret-key", Self.providerKey,
            "--webhook-secret", Self.webhookSecret, "--seed", "\(seed)", "--faults", faults,
        ]
        for node in nodes { arguments += ["--webhook-url", "\(node.http)/v1/payments/webhook"] }
        let pid = try Spawn.start(binary, arguments, logPath: "\(workDirectory)/psp.log")
        providerPID.withLock { $0 = pid }
        try "\(pid)\n".write(toFile: "\(workDirectory)/psp.pid", atomically: true, encoding: .utf8)
    }

    func stopProvider() {
        guard let pid = providerPID.withLock({ $0 }) else { return }
        Foundation.kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(5)
        while !Spawn.hasExited(pid), Date() < deadline { usleep(20_000) }
        if !Spawn.hasExited(pid) {
            Foundation.kill(pid, SIGKILL)
            Spawn.waitForExit(pid)
        }
        providerPID.withLock { $0 = nil }
    }

    /// The provider's own JSON answer for `path` (ledger, stats, faults).
    func provider(_ method: String, _ path: String, json: [String: Any]? = nil) async throws -> [String: Any] {
        try await APIClient(base: providerURL, token: Self.providerKey).call(method, path, json: json, timeout: 5)
    }

    /// Nodes that ended without being killed by the run (a crash): marked killed, returned.
    func reapCrashed() -> [Int] {
        states.withLock { states in
            var crashed: [Int] = []
            for index in states.indices {
                guard case .running(let pid) = states[index], Spawn.hasExited(pid) else { continue }
                states[index] = .killed
                crashed.append(index)
            }
            return crashed
        }
    }

    func kill(_ index: Int) {
        let pid: Int32? = states.withLock { states in
            switch states[index] {
            case .running(let pid), .paused(let pid):
                states[index] = .killed
                return pid
            case .killed: return nil
            }
        }
        guard let pid else { return }
        Foundation.kill(pid, SIGKILL)
        Spawn.waitForExit(pid)
    }

    func pause(_ index: Int) {
        states.withLock { states in
            guard case .running(let pid) = states[index] else { return }
            Foundation.kill(pid, SIGSTOP)
            states[index] = .paused(pid: pid)
        }
    }

    func resume(_ index: Int) {
        states.withLock { states in
            guard case .paused(let pid) = states[index] else { return }
            Foundation.kill(pid, SIGCONT)
            states[index] = .running(pid: pid)
        }
    }

    /// Stops every node: SIGTERM (resumed first when paused), then SIGKILL after `grace`.
    func stopAll(grace: Duration = .seconds(10)) async {
        var pids: [Int32] = []
        for index in nodes.indices {
            resume(index)
            if case .running(let pid) = state(index) {
                Foundation.kill(pid, SIGTERM)
                pids.append(pid)
            }
        }
        let deadline = ContinuousClock.now.advanced(by: grace)
        for pid in pids {
            while !Spawn.hasExited(pid) {
                if ContinuousClock.now > deadline {
                    Foundation.kill(pid, SIGKILL)
                    Spawn.waitForExit(pid)
                    break
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        states.withLock { $0 = Array(repeating: .killed, count: nodes.count) }
    }

    // MARK: - Partitions (nftables)

    /// Drops every packet between `index`'s address and the other nodes' addresses. Clients
    /// (127.0.0.1) and PostgreSQL still reach it, and it them.
    func partition(_ index: Int) throws {
        let isolated = nodes[index].host
        let others = nodes.filter { $0.index != index }.map(\.host).joined(separator: ", ")
        try nft("add table inet \(partitionTable)")
        try nft("add chain inet \(partitionTable) out { type filter hook output priority 0; policy accept; }")
        try nft("add rule inet \(partitionTable) out ip saddr \(isolated) ip daddr { \(others) } drop")
        try nft("add rule inet \(partitionTable) out ip saddr { \(others) } ip daddr \(isolated) drop")
        partitioned.withLock { $0 = index }
    }

    func heal() {
        guard partitioned.withLock({ $0 }) != nil else { return }
        try? nft("delete table inet \(partitionTable)")
        partitioned.withLock { $0 = nil }
    }

    private func nft(_ command: String) throws {
        let status = try Spawn.run("/usr/sbin/nft", [command])
        guard status == 0 else { throw ChaosError("nft \(command) failed (\(status))") }
    }

    static func partitionsAvailable() -> Bool { FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft") }

    // MARK: - PostgreSQL

    func restartPostgres() throws {
        guard let postgres else { throw ChaosError("pg-restart needs --pg-data-dir and --pg-bin") }
        let pgCtl = "\(postgres.bin)/pg_ctl"
        let restart = [
            "-D", postgres.dataDirectory, "-m", "fast", "-w", "-l", postgres.dataDirectory + "/../server.log",
            "restart",
        ]
        let status =
            getuid() == 0
            ? try Spawn.run("/usr/sbin/runuser", ["-u", "postgres", "--", pgCtl] + restart)
            : try Spawn.run(pgCtl, restart)
        guard status == 0 else { throw ChaosError("pg_ctl restart failed (\(status))") }
    }

    // MARK: - Health

    /// Whether every node answers ready and sees all `nodes` alive.
    func converged() async -> Bool {
        for node in nodes {
            guard let view = try? await Self.getJSON(node.http + "/v1/cluster"),
                let members = view["members"] as? [[String: Any]],
                members.filter({ $0["status"] as? String == "alive" }).count == nodes.count,
                (try? await Self.status(node.http + "/health/ready")) == 200
            else { return false }
        }
        return true
    }

    /// Heals everything and cleans up: resumes, heals the partition, stops every node.
    func cleanUp() async {
        heal()
        await stopAll()
        stopProvider()
    }

    /// For an interrupt: synchronous, no task needed (the cooperative pool may be busy). Kills
    /// every node (resumed first) and deletes the partition rules.
    func emergencyCleanUp() {
        _ = try? Spawn.run("/usr/sbin/nft", ["delete table inet \(partitionTable)"])
        let pids: [pid_t] = states.withLock { states in
            states.compactMap { state -> pid_t? in
                switch state {
                case .running(let pid), .paused(let pid): pid
                case .killed: nil
                }
            }
        }
        for pid in pids + [providerPID.withLock { $0 }].compactMap({ $0 }) {
            Foundation.kill(pid, SIGCONT)
            Foundation.kill(pid, SIGKILL)
            Spawn.waitForExit(pid)
        }
    }

    static func status(_ url: String) async throws -> Int {
        try await APIClient.send("GET", url, timeout: 2).status
    }

    static func getJSON(_ url: String) async throws -> [String: Any] {
        let answer = try await APIClient.send("GET", url, timeout: 2)
        return (try JSONSerialization.jsonObject(with: answer.body) as? [String: Any]) ?? [:]
    }
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
