import ArtPayClient
import AuctionCore
import AuctionRuntime
import ClusterCore
import Foundation
import Gateway
import Node
import PostgresNIO
import Storage
import Synchronization
import TestSupport
import Testing

/// Three real `artpay node` processes on 127.0.0.4–6 against the test PostgreSQL (one test at a
/// time: the clusters pick free ports, and two at once could pick the same). Commands sent to
/// any node reach the owner; after kill -9 of an owner its auctions are served by the new owner
/// and every acknowledged bid is still there. `ARTPAY_FAILOVER_ROUNDS=10` measures ten failovers
/// (the killed node is restarted between rounds) and prints the median.
@Suite(.serialized) struct FailoverTests {
    static let secret = "process-test-cluster-secret"

    @Test func killingAnOwner_losesNoAcknowledgedBid_andItsAuctionsMoveOn() async throws {
        let cluster = try await ProcessCluster.start(secret: Self.secret)
        defer { cluster.stop() }
        let (pg, database, nodes) = (cluster.pg, cluster.database, cluster.nodes)
        let rounds = ProcessInfo.processInfo.environment["ARTPAY_FAILOVER_ROUNDS"].flatMap(Int.init) ?? 1

        let client = ClusterClient(secret: ClusterSecret(Self.secret)!)
        await client.start()
        defer { Task { await client.stop() } }
        let allIds = Set(nodes.map(\.id.rawValue))

        let metrics = await nodes[0].metrics() ?? ""
        #expect(metrics.contains("artpay_cluster_members{state=\"alive\"} 3"), "metrics: \(metrics.prefix(300))")

        // Auctions spread over all nodes, each with an acknowledged bid sent through a non-owner.
        let now = SystemClock().now()
        var acknowledged: [AuctionID: [BidID]] = [:]
        var auctions: [AuctionID] = []
        for index in 0..<30 {
            let id = AuctionID(rawValue: "mp-lot-\(index)")!
            let terms = AuctionTerms(
                auctionId: id, sellerId: UserID(rawValue: "seller")!, title: "Lot \(index)",
                startingPrice: Money(minorUnits: 1_000, currency: .eur), opensAt: now,
                closesAt: now.advanced(by: .seconds(3_600)), extensionWindow: .zero)
            let created = await client.submit(.create(terms), to: id, via: nodes[index % 3].clusterAddress)
            #expect((try? created?.get())?.seq == 1, "create \(id): \(String(describing: created))")
            let bidId = BidID(rawValue: "first-\(index)")!
            let bid = PlaceBid(
                bidId: bidId, bidderId: UserID(rawValue: "alice")!, maximum: Money(minorUnits: 5_000, currency: .eur))
            if case .success = await client.submit(.placeBid(bid), to: id, via: nodes[(index + 1) % 3].clusterAddress) {
                acknowledged[id, default: []].append(bidId)
            }
            auctions.append(id)
        }
        #expect(acknowledged.count == 30)

        var failoverTimes: [Double] = []
        let shardMap = ShardMap()
        for round in 0..<rounds {
            // The owner of an auction, by the placement every node computes.
            let live = nodes.filter(\.isRunning).map(\.id).sorted()
            let target = auctions[round % auctions.count]
            guard let ownerId = Placement.owner(of: shardMap.shard(of: target), among: live),
                let owner = nodes.first(where: { $0.id == ownerId })
            else {
                Issue.record("no owner")
                return
            }
            let survivor = nodes.first { $0.id != ownerId && $0.isRunning }!

            owner.kill()
            let killedAt = ContinuousClock.now
            var accepted = false
            var attempt = 0
            while !accepted, ContinuousClock.now - killedAt < .seconds(30) {
                attempt += 1
                let bidId = BidID(rawValue: "after-kill-\(round)-\(attempt)")!
                let bid = PlaceBid(
                    bidId: bidId, bidderId: UserID(rawValue: "bob-\(round)")!,
                    maximum: Money(minorUnits: 100_000 + Int64(round) * 10_000, currency: .eur))
                let result = await client.submit(.placeBid(bid), to: target, via: survivor.clusterAddress)
                if case .success = result {
                    accepted = true
                    acknowledged[target, default: []].append(bidId)
                }
            }
            #expect(accepted, "a bid on \(target) is accepted after its owner \(ownerId) was killed")
            let elapsed = (ContinuousClock.now - killedAt).components
            failoverTimes.append(Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)

            if round + 1 < rounds {
                try owner.start(environment: [:])
                try await eventually("\(ownerId) rejoins") {
                    for node in nodes {
                        guard let view = await node.clusterView(), view.aliveMembers == allIds else { return false }
                    }
                    return true
                }
            }
        }
        let sorted = failoverTimes.sorted()
        print(
            "failover: kill -9 of the owner to the first accepted bid, \(rounds) round(s): "
                + sorted.map { String(format: "%.2f s", $0) }.joined(separator: ", ")
                + String(format: "; median %.2f s", sorted[sorted.count / 2]))

        // Every acknowledged bid is in the log, once.
        let expected = acknowledged
        try await pg.withClient(database: database) { client in
            let store = PostgresEventStore(client: client)
            for (auction, bids) in expected {
                let log = try await store.events(of: auction, after: 0, limit: 10_000)
                let logged = log.compactMap { stored -> BidID? in
                    if case .bidAccepted(let bid) = stored.event { return bid.bidId }
                    return nil
                }
                for bid in bids { #expect(logged.filter { $0 == bid }.count == 1, "acknowledged \(bid) on \(auction)") }
            }
        }
    }

    /// A watcher connected to the node that is killed resumes on another node; the events it saw
    /// have no gap and no duplicate.
    @Test func watcherOnAKilledNode_resumesElsewhere_withoutGapOrDuplicate() async throws {
        let cluster = try await ProcessCluster.start(secret: "watcher-test-cluster-secret")
        defer { cluster.stop() }
        let nodes = cluster.nodes
        let http = nodes.map { "http://\($0.httpAddress.host):\($0.httpAddress.port)" }
        let admin = try await APIClient(base: http[1]).loggedIn("root", "root-password")
        let auction = "watched-\(UUID().uuidString.prefix(8).lowercased())"
        let closes = Date().addingTimeInterval(3_600).formatted(.iso8601)
        try await admin.call(
            "POST", "/v1/auctions",
            json: [
                "id": auction, "title": "Watched lot", "currency": "EUR", "startingPrice": 1_000, "closesAt": closes,
            ])
        try await APIClient(base: http[1]).call(
            "POST", "/v1/users", json: ["username": "alice", "password": "alice-password"])
        try await APIClient(base: http[1]).call(
            "POST", "/v1/users", json: ["username": "bob", "password": "bob-password"])
        let bidders = [
            try await APIClient(base: http[1]).loggedIn("alice", "alice-password"),
            try await APIClient(base: http[2]).loggedIn("bob", "bob-password"),
        ]

        // The watcher starts on the owner's node, which is the one that will die.
        let owner = Placement.owner(of: ShardMap().shard(of: AuctionID(rawValue: auction)!), among: nodes.map(\.id))!
        let victim = nodes.firstIndex { $0.id == owner }!
        let order = [victim] + nodes.indices.filter { $0 != victim }
        let seen = Mutex<[Int64]>([])
        let watcher = Task {
            for await (event, _) in EventStreamClient.follow(auction, after: 0, nodes: order.map { http[$0] }) {
                let count = seen.withLock {
                    $0.append(event.seq ?? -1)
                    return $0.count
                }
                if count >= 11 { return }
            }
        }
        // Alice's notifications, on the same node: bob outbids her with every odd bid after the first.
        let notified = Mutex<[String]>([])
        let aliceToken = bidders[0].token!
        let started = Date()
        let notificationWatcher = Task {
            for await (event, _) in EventStreamClient.notifications(
                token: aliceToken, nodes: order.map { http[$0] }, since: started)
            {
                notified.withLock { $0.append(event.id) }
            }
        }
        defer { notificationWatcher.cancel() }
        func bid(_ n: Int) async throws {
            try await cluster.bid("b-\(n)", maximum: 2_000 + n * 1_000, on: auction, as: bidders[n % 2], turn: n)
        }
        for n in 1...4 { try await bid(n) }
        try await eventually("the watcher saw the first five events") { seen.withLock { $0.count } >= 5 }
        nodes[victim].kill()
        for n in 5...10 { try await bid(n) }
        try await eventually("the watcher saw all eleven events") {
            seen.withLock { $0.count } >= 11
        }
        watcher.cancel()
        #expect(seen.withLock { $0 } == Array(1...11), "events seen: \(seen.withLock { $0 })")
        // Bids 3, 5, 7 and 9 (seq 4, 6, 8, 10) outbid alice; the watcher saw each once, across the kill.
        let outbid = [4, 6, 8, 10].map { "\(auction):\($0):outbid" }
        try await eventually("alice heard every outbid") { notified.withLock { $0 }.count >= 4 }
        #expect(notified.withLock { $0 } == outbid, "notifications: \(notified.withLock { $0 })")
    }
}

/// What the feed test's consumer kept of an event.
private struct FeedEventSeen: Sendable {
    var cursor: String?
    var type: String?
    var auctionId: String?
    var seq: Int?
    var bidId: String?
}

/// A service following the commit-ordered feed through a node that is killed goes on through
/// another from its last cursor: every acknowledged bid arrives, none twice, each lot's events in
/// seq order — the order comes from the store, so which node serves it does not matter.
@Suite(.serialized) struct FeedFailoverTests {
    @Test func aFeedConsumerOnAKilledNode_resumesOnAnother_withoutGapOrRepeat() async throws {
        let cluster = try await ProcessCluster.start(secret: "feed-failover-cluster-secret")
        defer { cluster.stop() }
        let nodes = cluster.nodes
        let http = nodes.map { "http://\($0.httpAddress.host):\($0.httpAddress.port)" }
        let admin = try await APIClient(base: http[1]).loggedIn("root", "root-password")
        let service = try await APIClient(base: http[1]).call(
            "POST", "/v1/users", json: ["username": "feed-reader", "password": "feed-reader-password"])
        let serviceId = try #require(service["id"] as? String)
        try await admin.call("PUT", "/v1/users/\(serviceId)/roles", json: ["roles": ["service"]])
        let lots = try await cluster.openLots(4, named: "fed", by: admin)
        let bidders = try await cluster.aliceAndBob(loggingInThrough: (1, 2))

        // The consumer reads pages from node 0, the one that dies, and moves on when it fails.
        let victim = 0
        let reader = try await APIClient(base: http[victim]).loggedIn("feed-reader", "feed-reader-password")
        let seen = Mutex<[FeedEventSeen]>([])
        let moved = Mutex(0)
        let consumer = Task {
            var client = reader
            var cursor: String?
            var node = victim
            while !Task.isCancelled {
                client.base = http[node]
                do {
                    let page = try await client.call(
                        "GET", "/v1/feed?limit=7" + (cursor.map { "&after=\($0)" } ?? ""), timeout: 2)
                    let events = (page["events"] as? [[String: Any]] ?? []).map {
                        FeedEventSeen(
                            cursor: $0["cursor"] as? String, type: $0["type"] as? String,
                            auctionId: $0["auctionId"] as? String, seq: $0["seq"] as? Int, bidId: $0["bidId"] as? String
                        )
                    }
                    seen.withLock { $0 += events }
                    cursor = page["next"] as? String ?? cursor
                    if events.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                } catch is CancellationError {
                    return
                } catch {
                    node = (node + 1) % nodes.count
                    moved.withLock { $0 += 1 }
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
        }
        defer { consumer.cancel() }

        var acknowledged: Set<String> = []
        func bid(_ n: Int) async throws {
            if try await cluster.bid(
                "fb-\(n)", maximum: 2_000 + n * 1_000, on: lots[n % lots.count], as: bidders[n % 2], turn: n,
                timeout: 5)
            {
                acknowledged.insert("fb-\(n)")
            }
        }
        for n in 0..<12 { try await bid(n) }
        try await eventually("the consumer read the first bids") {
            seen.withLock { $0 }.filter { $0.type == "bid_placed" }.count >= 6
        }
        nodes[victim].kill()
        for n in 12..<30 { try await bid(n) }
        let bidIds: @Sendable () -> [String] = {
            seen.withLock { $0 }.filter { $0.type == "bid_placed" }.compactMap(\.bidId)
        }
        let acknowledgedBids = acknowledged
        #expect(acknowledgedBids.count == 30)
        try await eventually("every acknowledged bid reached the consumer") {
            acknowledgedBids.isSubset(of: Set(bidIds()))
        }
        consumer.cancel()
        #expect(moved.withLock { $0 } >= 1, "the consumer had to move to another node")
        let events = seen.withLock { $0 }
        let cursors = events.compactMap(\.cursor)
        #expect(Set(cursors).count == cursors.count, "no event twice")
        #expect(Set(bidIds()).count == bidIds().count, "no bid twice")
        for lot in lots {
            let seqs = events.filter { $0.auctionId == lot }.compactMap(\.seq)
            #expect(seqs == Array(1...seqs.count), "\(lot): \(seqs)")
        }
    }
}

/// Webhook deliveries go on when the node delivering them is killed with SIGKILL: the owner of
/// the endpoint's shard in the new view resumes from the fenced cursor. Every acknowledged bid
/// reaches the receiver, signed, each lot's events in seq order (an event may come twice around
/// the kill: at least once).
@Suite(.serialized) struct WebhookFailoverTests {
    @Test func deliveries_goOnFromAnotherNode_afterTheDeliveringNodeIsKilled() async throws {
        let cluster = try await ProcessCluster.start(secret: "webhook-failover-cluster-secret")
        defer { cluster.stop() }
        let receiver = try await WebhookReceiver.start(secret: "whsec_process_test_secret")
        defer { receiver.stop() }
        let nodes = cluster.nodes
        let http = nodes.map { "http://\($0.httpAddress.host):\($0.httpAddress.port)" }
        let admin = try await APIClient(base: http[1]).loggedIn("root", "root-password")
        let endpoint = try await admin.call(
            "POST", "/v1/webhooks",
            json: ["url": receiver.url, "types": ["bid_placed"], "secret": receiver.secret, "from": "now"])
        let endpointID = try #require(endpoint["id"] as? String)
        let shard = ShardMap().shard(ofKey: WebhookDispatcher.placementKey(of: endpointID))
        let deliverer = try #require(Placement.owner(of: shard, among: nodes.map(\.id)))
        let victim = try #require(nodes.firstIndex { $0.id == deliverer })
        let lots = try await cluster.openLots(3, named: "hooked", by: admin)
        let bidders = try await cluster.aliceAndBob(loggingInThrough: ((victim + 1) % 3, (victim + 2) % 3))
        var acknowledged: Set<String> = []
        func bid(_ n: Int) async throws {
            if try await cluster.bid(
                "hb-\(n)", maximum: 2_000 + n * 1_000, on: lots[n % lots.count], as: bidders[n % 2], turn: n,
                timeout: 5)
            {
                acknowledged.insert("hb-\(n)")
            }
        }
        for n in 0..<10 { try await bid(n) }
        try await eventually("the delivering node sent some") { receiver.taken.count >= 3 }
        nodes[victim].kill()
        for n in 10..<24 { try await bid(n) }
        let expected = acknowledged
        #expect(expected.count == 24)
        try await eventually("every acknowledged bid was delivered") {
            expected.isSubset(of: Set(receiver.taken.compactMap(\.bidId)))
        }
        let taken = receiver.taken
        #expect(receiver.badSignatures == 0)
        #expect(taken.allSatisfy { $0.type == "bid_placed" })
        for lot in lots {
            var seen: Set<Int> = []
            var firstTimes: [Int] = []
            for event in taken where event.auctionId == lot && seen.insert(event.seq).inserted {
                firstTimes.append(event.seq)
            }
            #expect(firstTimes == firstTimes.sorted(), "\(lot) in seq order: \(firstTimes)")
        }
        let repeats = taken.count - Set(taken.map(\.cursor)).count
        #expect(repeats <= 3, "only what was in flight at the kill comes twice: \(repeats)")
    }
}

/// Three `artpay node` processes on 127.0.0.4–6 (free ports, a fresh database, a signing key, an
/// admin), started and converged.
final class ProcessCluster: Sendable {
    let pg: TestPostgres
    let database: String
    let directory: URL
    let nodes: [NodeProcess]

    private init(pg: TestPostgres, database: String, directory: URL, nodes: [NodeProcess]) {
        self.pg = pg
        self.database = database
        self.directory = directory
        self.nodes = nodes
    }

    /// `names`: host names (resolving to the nodes' addresses) the nodes advertise and seed each
    /// other by, as Kubernetes gives them; the first node is also a seed under its address, so a
    /// node hears of the same peer under a name and under an IP.
    static func start(secret: String, names: [String]? = nil) async throws -> ProcessCluster {
        let pg = try TestPostgres.fromEnvironment()
        let database = try await pg.createDatabase()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-mp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var nodes: [NodeProcess] = []
        for index in 1...3 {
            // 127.0.0.4–6: apart from the in-process tests, which bind 127.0.0.1.
            let host = "127.0.0.\(index + 3)"
            let clusterAddress = NodeAddress(host: host, port: try await freePort(on: host))
            let httpAddress = NodeAddress(host: host, port: try await freePort(on: host))
            nodes.append(
                NodeProcess(
                    id: NodeID(rawValue: "node-\(index)")!, clusterAddress: clusterAddress, httpAddress: httpAddress,
                    configPath: directory.appendingPathComponent("node-\(index).json").path,
                    logPath: directory.appendingPathComponent("node-\(index).log").path))
        }
        func advertised(_ index: Int) -> String {
            guard let names else { return "\(nodes[index].clusterAddress)" }
            return "\(names[index]):\(nodes[index].clusterAddress.port)"
        }
        let seeds = (nodes.indices.map(advertised) + (names == nil ? [] : ["\(nodes[0].clusterAddress)"]))
            .map { "\"\($0)\"" }.joined(separator: ", ")
        let keyPath = directory.appendingPathComponent("jwt.pem").path
        try TokenAuthority.generatePrivateKeyPEM().write(toFile: keyPath, atomically: true, encoding: .utf8)
        for (index, node) in nodes.enumerated() {
            let config = """
                {
                  "node": { "id": "\(node.id)" },
                  "cluster": { "host": "\(node.clusterAddress.host)", "port": \(node.clusterAddress.port), "advertise": "\(advertised(index))", "seeds": [\(seeds)], "secret": "\(secret)",
                               "tls": \(try TestCertificates.configJSON(for: node.id, host: node.clusterAddress.host, in: directory.path)) },
                  "http": { "host": "\(node.httpAddress.host)", "port": \(node.httpAddress.port) },
                  "store": { "kind": "postgres", "postgres": { "host": "\(pg.host)", "port": \(pg.port), "user": "\(pg.user)", "database": "\(database)" } },
                  "auth": { "signingKeyFile": "\(keyPath)", "passwordCost": 4, "admin": { "username": "root", "password": "root-password" } }
                }
                """
            try config.write(toFile: node.configPath, atomically: true, encoding: .utf8)
        }
        let cluster = ProcessCluster(pg: pg, database: database, directory: directory, nodes: nodes)
        do {
            for node in nodes { try node.start(environment: [:]) }
            let allIds = Set(nodes.map(\.id.rawValue))
            try await eventually("three nodes see each other alive") {
                for node in nodes {
                    guard let view = await node.clusterView(), view.aliveMembers == allIds else { return false }
                }
                return true
            }
            // The users the tests send commands for: the nodes check them again (they exist, have the
            // role) when another node or the test's client forwards a command.
            try await pg.withClient(database: database) { client in
                let store = PostgresEventStore(client: client)
                let users = [("seller", "seller")] + (["alice"] + (0..<50).map { "bob-\($0)" }).map { ($0, "bidder") }
                for (id, role) in users {
                    try await store.createUser(
                        StoredUser(
                            id: UserID(rawValue: id)!, username: "t-\(id)", passwordHash: "-", roles: [role],
                            createdAt: Timestamp(millisecondsSinceEpoch: 0)))
                }
            }
        } catch {
            cluster.stop()
            throw error
        }
        return cluster
    }

    func stop() {
        nodes.forEach { $0.stop() }
        if !ProcessInfo.processInfo.environment.keys.contains("ARTPAY_KEEP_LOGS") {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}

extension ProcessCluster {
    func httpBase(_ index: Int) -> String { "http://\(nodes[index].httpAddress.host):\(nodes[index].httpAddress.port)" }

    /// `count` lots open for an hour, created by `admin` through its node; their ids.
    func openLots(_ count: Int, named prefix: String, by admin: APIClient) async throws -> [String] {
        let closes = Date().addingTimeInterval(3_600).formatted(.iso8601)
        let lots = (0..<count).map { "\(prefix)-\($0)-\(UUID().uuidString.prefix(6).lowercased())" }
        for lot in lots {
            try await admin.call(
                "POST", "/v1/auctions",
                json: ["id": lot, "title": "Lot \(lot)", "currency": "EUR", "startingPrice": 1_000, "closesAt": closes])
        }
        return lots
    }

    /// alice and bob, registered and logged in, through the nodes of `indices`.
    func aliceAndBob(loggingInThrough indices: (Int, Int)) async throws -> [APIClient] {
        for name in ["alice", "bob"] {
            try await APIClient(base: httpBase(indices.0)).call(
                "POST", "/v1/users", json: ["username": name, "password": "\(name)-password"])
        }
        return [
            try await APIClient(base: httpBase(indices.0)).loggedIn("alice", "alice-password"),
            try await APIClient(base: httpBase(indices.1)).loggedIn("bob", "bob-password"),
        ]
    }

    /// Places bid `bidId` on `auction` as `bidder`, through a running node (the `turn`-th of those
    /// running), again after a pause while the answer is 503 (the auction is moving to another
    /// owner) for up to 30 s; true once accepted, false (with an issue) when it never was.
    @discardableResult
    func bid(
        _ bidId: String, maximum: Int, on auction: String, as bidder: APIClient, turn: Int,
        timeout: TimeInterval = 10
    ) async throws -> Bool {
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while ContinuousClock.now < deadline {
            let running = nodes.indices.filter { nodes[$0].isRunning }
            var client = bidder
            client.base = httpBase(running[turn % running.count])
            do {
                try await client.call(
                    "POST", "/v1/auctions/\(auction)/bids",
                    json: ["bidId": bidId, "maximum": maximum, "currency": "EUR"], timeout: timeout)
                return true
            } catch let failure as APIClient.Failure where failure.status != 503 {
                throw failure
            } catch {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        Issue.record("bid \(bidId) was never accepted")
        return false
    }
}
