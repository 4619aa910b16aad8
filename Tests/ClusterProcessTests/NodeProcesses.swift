import ArtPayClient
import AuctionCore
import AuctionRuntime
import ClusterCore
import Foundation
import NIOCore
import NIOPosix
import Node
import TestSupport

/// One `artpay node` child process, started from a configuration file written for it.
final class NodeProcess: @unchecked Sendable {
    let id: NodeID
    let clusterAddress: NodeAddress
    let httpAddress: NodeAddress
    let configPath: String
    let logPath: String
    private var process: Process?

    /// The node's HTTP API, e.g. `http://127.0.0.1:8100`.
    var httpURL: String { "http://\(httpAddress.host):\(httpAddress.port)" }

    init(id: NodeID, clusterAddress: NodeAddress, httpAddress: NodeAddress, configPath: String, logPath: String) {
        self.id = id
        self.clusterAddress = clusterAddress
        self.httpAddress = httpAddress
        self.configPath = configPath
        self.logPath = logPath
    }

    static var binary: String {
        get throws {
            let env = ProcessInfo.processInfo.environment
            let path = env["ARTPAY_BINARY"] ?? FileManager.default.currentDirectoryPath + "/.build/debug/artpay"
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw HarnessError("no artpay binary at \(path): run the tests with scripts/test, which builds it")
            }
            return path
        }
    }

    func start(environment: [String: String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.binary)
        process.arguments = ["node", "--config", configPath, "--log-level", "info"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = process
    }

    var isRunning: Bool { process?.isRunning ?? false }

    /// kill -9: no goodbye, no flush.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM; a node that has not stopped 10 s later gets SIGKILL. Returns at once: the wait runs
    /// on a thread of its own, because blocking one of the test process's few cooperative threads
    /// for a graceful stop stalled unrelated tests past their deadlines.
    func stop() {
        guard let process, process.isRunning else { return }
        process.terminate()
        Thread.detachNewThread {
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        }
    }

    /// The node's `/metrics` text; nil while it does not answer.
    func metrics() async -> String? {
        guard let answer = try? await APIClient.send("GET", "\(httpURL)/metrics", timeout: 5), answer.status == 200
        else { return nil }
        return String(decoding: answer.body, as: UTF8.self)
    }

    /// This node's view of the cluster, from its HTTP API; nil while it does not answer.
    func clusterView() async -> ClusterSnapshot? {
        guard let answer = try? await APIClient.send("GET", "\(httpURL)/v1/cluster", timeout: 5), answer.status == 200
        else { return nil }
        return try? JSONDecoder().decode(ClusterSnapshot.self, from: answer.body)
    }
}

/// A test's client of the cluster protocol: it knows the secret and sends commands to any node,
/// as a gateway does.
actor ClusterClient {
    private let transport: ClusterTransport
    private var pending: [UInt64: CheckedContinuation<Result<CommandAccepted, EngineError>, Never>] = [:]
    private var next: UInt64 = 0

    init(secret: ClusterSecret) {
        let id = NodeID(rawValue: "test-client")!
        transport = try! ClusterTransport(
            node: id, secret: secret, tls: TestCertificates.tls(for: id), logger: .init(label: "test.client"))
    }

    func start() {
        transport.onFrame { [weak self] frame, _, _ in
            guard case .response(let id, let result) = frame else { return }
            await self?.resolve(id, result)
        }
    }

    private func resolve(_ id: UInt64, _ result: Result<CommandAccepted, EngineError>) {
        pending.removeValue(forKey: id)?.resume(returning: result)
    }

    /// As a gateway would send it: for the user in whose name the command is (the nodes check that
    /// user again: `ProcessCluster` creates them), or as a node's own work.
    static func issuer(of command: AuctionCommand) -> CommandIssuer {
        switch command {
        case .create(let terms): .user(terms.sellerId, tokenVersion: 0)
        case .placeBid(let bid): .user(bid.bidderId, tokenVersion: 0)
        case .buyNow(let purchase): .user(purchase.bidderId, tokenVersion: 0)
        default: .node
        }
    }

    /// Sends `command` to the node at `address`; nil when no answer came within `timeout`.
    func submit(
        _ command: AuctionCommand, to auction: AuctionID, via address: NodeAddress, timeout: Duration = .seconds(6)
    )
        async -> Result<CommandAccepted, EngineError>?
    {
        next += 1
        let id = next
        return await withCheckedContinuation { continuation in
            pending[id] = continuation
            transport.send(
                .request(id: id, hops: 0, auction: auction, command: command, issuer: Self.issuer(of: command)),
                to: address)
            Task { [weak self] in
                try? await Task.sleep(for: timeout)
                await self?.expire(id)
            }
        }
    }

    private func expire(_ id: UInt64) {
        pending.removeValue(forKey: id)?.resume(returning: .failure(.ownerUnavailable("test client timeout")))
    }

    func stop() {
        transport.shutdown()
    }
}

/// A free TCP port on `host`, found by binding port 0.
func freePort(on host: String) async throws -> Int {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .bind(host: host, port: 0).get()
    let port = channel.localAddress?.port ?? 0
    try await channel.close()
    return port
}

extension ClusterSnapshot {
    var aliveMembers: Set<String> { Set(members.filter { $0.status == "alive" }.map(\.id)) }
}
