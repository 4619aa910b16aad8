import ArgumentParser
import ArtPayClient
import AuctionCore
import Foundation
import Gateway
import Logging
import Node
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#endif

/// `artpay dev`: a local three-node cluster on 127.0.0.1–127.0.0.3 with the embedded SQLite store
/// under `.artpay/`, demo users and a demo sale, the URLs and a ready-to-paste bid command, and a
/// live status line. Ctrl-C stops every node (each leaves the cluster gracefully).
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Run a local 3-node ArtPay cluster with demo data (no PostgreSQL needed).")

    @Option(help: "Directory for the embedded store, keys, configuration and logs.")
    var dataDirectory: String = ".artpay"
    @Option(help: "Seconds until the first demo lot closes (the others follow a minute apart).")
    var firstCloseSeconds: Int = 180
    @Option(help: "Stop after this many minutes (0: run until Ctrl-C).")
    var minutes: Int = 0
    @Option(help: "Cluster port of every node (each on its own loopback address).")
    var clusterPort: Int = 7_100
    @Option(help: "HTTP port of every node.")
    var httpPort: Int = 8_100
    @Option(help: "Seconds a buyer has to pay (and a runner-up to take a second-chance offer).")
    var paymentDeadlineSeconds: Int = 120

    static let pspSecretKey = "sk_test_artpay_dev"
    static let webhookSecret = "whsec_artpay_dev"

    static let users: [(String, String, [String])] = [
        ("sofia", "sofia-password", ["seller"]), ("marco", "marco-password", ["seller"]),
        ("alice", "alice-password", ["bidder"]), ("bob", "bob-password", ["bidder"]),
        ("carol", "carol-password", ["bidder"]),
    ]

    /// The sandbox test card each demo bidder keeps on file: what they win is charged with it, with
    /// no action from them. Carol's declines, to show a default and a second-chance offer.
    static let savedCards = ["alice": "pm_card_visa", "bob": "pm_card_mastercard", "carol": "pm_card_chargeDeclined"]

    func run() async throws {
        let root = URL(fileURLWithPath: dataDirectory, isDirectory: true).standardizedFileURL
        let devDirectory = root.appendingPathComponent("dev")
        try FileManager.default.createDirectory(at: devDirectory, withIntermediateDirectories: true)
        let keyPath = devDirectory.appendingPathComponent("jwt-es256.pem").path
        if !FileManager.default.fileExists(atPath: keyPath) {
            _ = FileManager.default.createFile(
                atPath: keyPath, contents: Data(TokenAuthority.generatePrivateKeyPEM().utf8),
                attributes: [.posixPermissions: 0o600])
        }
        let seeds = (1...3).map { "\"127.0.0.\($0):\(clusterPort)\"" }.joined(separator: ", ")
        // A fresh cluster CA and node certificates on every start: cluster traffic is mutual TLS.
        let certificates = devDirectory.appendingPathComponent("certs")
        try FileManager.default.createDirectory(at: certificates, withIntermediateDirectories: true)
        let tls = try ClusterCertificates.writeLocalCluster(
            (1...3).map { (NodeID(rawValue: "node-\($0)")!, "127.0.0.\($0)") }, into: certificates.path)
        // The sandbox payment provider, on its own loopback address, sending webhooks to any node.
        let psp = "http://127.0.0.4:\(httpPort)"
        var nodes: [DevNode] = []
        for index in 1...3 {
            let config = devDirectory.appendingPathComponent("node-\(index).json")
            let files = tls.nodes[NodeID(rawValue: "node-\(index)")!]!
            let json = """
                {
                  "node": { "id": "node-\(index)" },
                  "cluster": { "host": "127.0.0.\(index)", "port": \(clusterPort), "seeds": [\(seeds)], "secret": "artpay-dev-cluster-secret",
                               "tls": \(ClusterCertificates.configJSON(authority: tls.authority, files)) },
                  "http": { "host": "127.0.0.\(index)", "port": \(httpPort) },
                  "store": { "kind": "sqlite", "sqlite": { "path": "\(root.appendingPathComponent("dev.sqlite").path)" } },
                  "auth": { "signingKeyFile": "\(keyPath)", "signingKid": "dev", "passwordCost": 10,
                            "admin": { "username": "admin", "password": "admin-password" } },
                  "payments": { "provider": { "url": "\(psp)", "secretKey": "\(Self.pspSecretKey)" },
                                "webhookSecrets": ["\(Self.webhookSecret)"],
                                "paymentDeadlineSeconds": \(paymentDeadlineSeconds),
                                "secondChanceWindowSeconds": \(paymentDeadlineSeconds) }
                }
                """
            try json.write(to: config, atomically: true, encoding: .utf8)
            nodes.append(
                DevNode(
                    name: "node-\(index)", http: "http://127.0.0.\(index):\(httpPort)",
                    arguments: ["node", "--config", config.path, "--log-level", "notice"],
                    log: devDirectory.appendingPathComponent("node-\(index).log").path))
        }
        var pspArguments = [
            "psp", "--host", "127.0.0.4", "--port", "\(httpPort)", "--secret-key", Self.pspSecretKey,
            "--webhook-secret",
            Self.webhookSecret,
        ]
        for node in nodes { pspArguments += ["--webhook-url", "\(node.http)/v1/payments/webhook"] }
        let provider = DevNode(
            name: "psp", http: psp, arguments: pspArguments, log: devDirectory.appendingPathComponent("psp.log").path)
        var logger = Logger(label: "artpay.dev")
        logger.logLevel = .error
        let service = DevClusterService(
            nodes: nodes, provider: provider, paymentDeadline: paymentDeadlineSeconds, firstClose: firstCloseSeconds,
            stopAfter: minutes > 0 ? .seconds(minutes * 60) : nil)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: service)], gracefulShutdownSignals: [.sigint, .sigterm], logger: logger))
        try await group.run()
    }
}

/// One child process of the dev cluster (`artpay node`, or the sandbox `artpay psp`), started with posix_spawn and reaped by pid
/// (see `Spawn`): Foundation's `Process` lost track of a child killed with kill -9 and left
/// `artpay dev` waiting forever on Ctrl-C.
final class DevNode: @unchecked Sendable {
    let name: String
    let http: String
    let arguments: [String]
    let log: String
    private let lock = NSLock()
    private var pid: pid_t?
    private var exited = false

    init(name: String, http: String, arguments: [String], log: String) {
        self.name = name
        self.http = http
        self.arguments = arguments
        self.log = log
    }

    func start() throws {
        var executable = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath().path
        if !FileManager.default.isExecutableFile(atPath: executable) {
            executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let started = try Spawn.start(executable, arguments, logPath: log)
        lock.withLock {
            pid = started
            exited = false
        }
    }

    /// The node's pid while it runs (a reaped pid is never returned, so it is never signalled).
    var runningPID: pid_t? {
        lock.withLock {
            guard let pid, !exited else { return nil }
            if Spawn.hasExited(pid) { exited = true }
            return exited ? nil : pid
        }
    }

    var isRunning: Bool { runningPID != nil }

    /// Asks the node to leave the cluster and stop (SIGTERM), without waiting.
    func requestStop() {
        if let pid = runningPID { kill(pid, SIGTERM) }
    }

    /// Stops the node: SIGTERM, up to 10 s for a graceful stop, then SIGKILL; returns once reaped.
    func stop() {
        requestStop()
        let deadline = Date().addingTimeInterval(10)
        while isRunning, Date() < deadline { usleep(20_000) }
        guard let pid = runningPID else { return }
        kill(pid, SIGKILL)
        Spawn.waitForExit(pid)
        lock.withLock { exited = true }
    }
}

/// Runs the dev cluster: starts the nodes, seeds demo data, prints how to use it, shows status.
struct DevClusterService: Service {
    let nodes: [DevNode]
    let provider: DevNode
    let paymentDeadline: Int
    let firstClose: Int
    let stopAfter: Duration?

    func run() async throws {
        defer {
            // Ask all nodes to stop at once, then wait for each; the provider last.
            nodes.forEach { $0.requestStop() }
            nodes.forEach { $0.stop() }
            provider.stop()
        }
        try provider.start()
        for node in nodes { try node.start() }
        print("artpay dev: starting 3 nodes (logs in \((nodes[0].log as NSString).deletingLastPathComponent)/)…")
        try await waitUntilReady()
        let lots = try await seedDemoData()
        printWelcome(lots)
        let started = ContinuousClock.now
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if let stopAfter, ContinuousClock.now - started > stopAfter { return }
                await printStatus()
                try? await Task.sleep(for: .seconds(2))
            }
        }
        print("\nstopping the nodes…")
    }

    private func waitUntilReady() async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ContinuousClock.now < deadline {
            var ready = 0
            for node in nodes {
                guard node.isRunning else {
                    throw ValidationError("\(node.name) exited during start-up; see \(node.log)")
                }
                if (try? await APIClient(base: node.http).call("GET", "/health/ready", timeout: 1)) != nil {
                    ready += 1
                }
            }
            if ready == nodes.count,
                (try? await APIClient(base: provider.http).call("GET", "/health", timeout: 1)) != nil
            {
                return
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw ValidationError("the nodes did not become ready within 60 s; see \(nodes[0].log)")
    }

    /// Demo users (created once) and a new sale of lots on every start.
    private func seedDemoData() async throws -> [(id: String, title: String, currency: String, minimum: Int)] {
        let api = APIClient(base: nodes[0].http)
        for (username, password, roles) in DevCommand.users {
            do {
                try await api.call(
                    "POST", "/v1/users", json: ["username": username, "password": password, "roles": roles])
            } catch let failure as APIClient.Failure where failure.status == 409 {
                // Created by an earlier run.
            }
            if let card = DevCommand.savedCards[username] {
                let bidder = try await api.loggedIn(username, password)
                try await bidder.call("POST", "/v1/me/payment-methods", json: ["paymentMethod": card])
            }
        }
        let stamp = Int(Date().timeIntervalSince1970)
        let catalogue: [(String, String, Int, Int?, Int?, String)] = [
            ("Untitled (Blue Study), oil on canvas", "EUR", 50_000, 120_000, nil, "sofia"),
            ("Harbour at Dusk, watercolour", "GBP", 8_000, nil, 60_000, "marco"),
            ("Bronze Hare, cast 1962", "USD", 250_000, 400_000, nil, "sofia"),
            ("Woodblock print, Edo period", "JPY", 30_000, nil, nil, "marco"),
            ("Portrait of a Lady, charcoal", "EUR", 12_000, nil, nil, "sofia"),
        ]
        var lots: [(String, String, String, Int)] = []
        for (index, (title, currency, starting, reserve, buyNow, seller)) in catalogue.enumerated() {
            let password = DevCommand.users.first { $0.0 == seller }!.1
            let client = try await APIClient(base: nodes[index % 3].http).loggedIn(seller, password)
            var body: [String: Any] = [
                "id": "evening-\(stamp)-lot-\(index + 1)", "title": title, "currency": currency,
                "startingPrice": starting,
                "closesAt": Date().addingTimeInterval(Double(firstClose + 60 * index)).formatted(.iso8601),
                "extensionWindowSeconds": 30, "saleId": "evening-\(stamp)",
            ]
            if let reserve { body["reservePrice"] = reserve }
            if let buyNow { body["buyNowPrice"] = buyNow }
            let created = try await client.call("POST", "/v1/auctions", json: body)
            guard let id = created["id"] as? String else {
                throw ValidationError("creating a demo lot answered without an id: \(created)")
            }
            lots.append((id, title, currency, created["minimumNextBid"] as? Int ?? starting))
        }
        return lots
    }

    private func printWelcome(_ lots: [(id: String, title: String, currency: String, minimum: Int)]) {
        print("\nArtPay is running: 3 nodes, embedded store .artpay/dev.sqlite")
        print("\n  Open the sale room in a browser: \(nodes[0].http)/  (every node serves it)\n")
        for node in nodes {
            print("  \(node.name): \(node.http)  (/v1/cluster, /metrics, /health/ready), pid \(node.runningPID ?? 0)")
        }
        print("\nDemo logins (username / password):")
        print("  admin / admin-password (admin)")
        for (username, password, roles) in DevCommand.users {
            print("  \(username) / \(password) (\(roles.joined(separator: ", ")))")
        }
        print("\nThe evening sale (soft close: a bid in the last 30 s extends by 30 s):")
        for lot in lots { print("  \(lot.id)  \(lot.title)  from \(lot.minimum) \(lot.currency) minor units") }
        let lot = lots[0]
        print(
            """

            Bid as alice on any node (amounts in minor units; the bid id makes retries safe):
              TOKEN=$(curl -s -X POST \(nodes[0].http)/v1/sessions -H 'content-type: application/json' \\
                -d '{"username":"alice","password":"alice-password"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')
              curl -s -X POST \(nodes[1].http)/v1/auctions/\(lot.id)/bids -H "authorization: Bearer $TOKEN" \\
                -H 'content-type: application/json' -d '{"bidId":"alice-1","maximum":\(lot.minimum + 10_000),"currency":"\(lot.currency)"}'
            Watch it live:   curl -N \(nodes[2].http)/v1/auctions/\(lot.id)/events
            Or with the CLI: swift run artpay bid \(lot.id) \(lot.minimum + 10_000) --user alice --password alice-password

            Paying: every bidder keeps a sandbox test card on file, and what they win is charged with it by the
            lot's owner with no action from them (alice: pm_card_visa, bob: pm_card_mastercard). Carol's card
            (pm_card_chargeDeclined) declines: if she wins, she has \(paymentDeadline) s to pay another way, else she is
            blocked from bidding and the runner-up gets a second-chance offer at the price without her bids.
              swift run artpay settlements --user alice --password alice-password      (invoices)
              swift run artpay settlements pay <lot> pm_card_visa --user carol --password carol-password
              swift run artpay settlements all --user admin --password admin-password  (every lot; admin)
            Or over HTTP:
              curl -s \(nodes[0].http)/v1/me/settlements -H "authorization: Bearer $TOKEN"
            Every authorization, capture and refund at the provider (sandbox):
              curl -s \(provider.http)/v1/sandbox/ledger -H 'authorization: Bearer \(DevCommand.pspSecretKey)'

            Kill a node (kill -9 <pid> with a pid above) to watch failover in the status line. Ctrl-C stops everything.

            """)
    }

    private func printStatus() async {
        var parts: [String] = []
        var captured = 0
        var declined = 0
        for node in nodes {
            if let view = try? await APIClient(base: node.http).call("GET", "/v1/cluster", timeout: 1),
                let members = view["members"] as? [[String: Any]]
            {
                let alive = members.filter { $0["status"] as? String == "alive" }.count
                let held = (view["shardsHeld"] as? [Any])?.count ?? 0
                parts.append("\(node.name) up, sees \(alive)/3, \(held) shards")
                let payments = view["payments"] as? [String: Any]
                captured += payments?["captures"] as? Int ?? 0
                declined += payments?["declines"] as? Int ?? 0
            } else {
                parts.append("\(node.name) DOWN")
            }
        }
        parts.append("paid \(captured), declined \(declined)")
        let line = "status: " + parts.joined(separator: " | ")
        print("\r" + line.padding(toLength: 130, withPad: " ", startingAt: 0), terminator: "")
        fflush(nil)
    }
}
