import ArtPayClient
import AuctionCore
import ChaosCheck
import ClusterCore
import Foundation
import Synchronization

/// Appends history lines (JSON Lines) from any task; times are microseconds since the run began,
/// on one monotonic clock.
final class HistoryWriter: Sendable {
    private let handle: Mutex<FileHandle>
    private let started = ContinuousClock.now
    private let encoder = JSONEncoder()

    init(path: String) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        handle = Mutex(try FileHandle(forWritingTo: URL(fileURLWithPath: path)))
    }

    var now: Int64 {
        let elapsed = (ContinuousClock.now - started).components
        return elapsed.seconds * 1_000_000 + elapsed.attoseconds / 1_000_000_000_000
    }

    func record(_ entry: HistoryEntry) {
        guard var line = try? encoder.encode(entry) else { return }
        line.append(0x0A)
        handle.withLock { $0.write(line) }
    }

    func close() {
        handle.withLock { try? $0.close() }
    }
}

/// The bidding workload of a chaos run: many bidders, a few hot auctions and many cold ones, and
/// short soft-close auctions created as it goes so closes happen under faults. Every request is
/// recorded; a bid whose outcome is unknown is resent with the same bid id to another node, as a
/// careful client would. Bounded by a deadline and an operation count.
final class ChaosWorkload: Sendable {
    let cluster: ChaosCluster
    let history: HistoryWriter
    let seed: UInt64
    let bidders: [(id: UserID, token: String)]
    let sellerToken: String
    let hot: [AuctionID]
    let cold: [AuctionID]
    let short = Mutex<[(id: AuctionID, endsAt: Date)]>([])
    /// The lowest maximum each auction would accept, as last seen in an answer.
    let minimum = Mutex<[AuctionID: Int64]>([:])
    let operations = Atomic<Int>(0)
    /// The highest seq each watcher has received.
    let lastWatched = Mutex<[Int: Int64]>([:])
    /// The ids of the end notifications (won, lost, cancelled) each bidder received, on any node.
    let notified = Mutex<[UserID: Set<String>]>([:])
    /// What the buyers did besides paying by hand (`pay(until:)`).
    struct PaymentFigures: Sendable {
        var cardsOnFile = 0
        var blocksLifted = 0
    }
    let payments = Mutex(PaymentFigures())
    init(
        cluster: ChaosCluster, history: HistoryWriter, seed: UInt64, bidders: [(id: UserID, token: String)],
        sellerToken: String,
        hot: [AuctionID], cold: [AuctionID]
    ) {
        self.cluster = cluster
        self.history = history
        self.seed = seed
        self.bidders = bidders
        self.sellerToken = sellerToken
        self.hot = hot
        self.cold = cold
    }

    static let currency = "EUR"

    /// Registers the users and creates the first auctions (through node 1, retrying elsewhere).
    static func prepare(
        cluster: ChaosCluster, history: HistoryWriter, seed: UInt64, bidderCount: Int, hot: Int, cold: Int
    ) async throws
        -> ChaosWorkload
    {
        let nodes = cluster.nodes.map(\.http)
        func user(_ name: String, roles: [String]) async throws -> (UserID, String) {
            _ = try? await retrying(nodes) {
                try await APIClient(base: $0).call(
                    "POST", "/v1/users", json: ["username": name, "password": "chaos-password", "roles": roles])
            }
            let client = try await retrying(nodes) { try await APIClient(base: $0).loggedIn(name, "chaos-password") }
            let me = try await retrying(nodes) {
                try await APIClient(base: $0, token: client.token).call("GET", "/v1/me")
            }
            guard let id = (me["id"] as? String).flatMap(UserID.init(rawValue:)), let token = client.token else {
                throw ChaosError("GET /v1/me for \(name) answered no usable id or the login no token: \(me)")
            }
            return (id, token)
        }
        let seller = try await user("chaos-seller", roles: ["seller"])
        var bidders: [(UserID, String)] = []
        for index in 0..<bidderCount { bidders.append(try await user("chaos-bidder-\(index)", roles: ["bidder"])) }
        let workload = ChaosWorkload(
            cluster: cluster, history: history, seed: seed, bidders: bidders.map { (id: $0.0, token: $0.1) },
            sellerToken: seller.1,
            hot: (0..<hot).map { AuctionID(rawValue: "s\(seed)-hot-\($0)")! },
            cold: (0..<cold).map { AuctionID(rawValue: "s\(seed)-cold-\($0)")! })
        for id in workload.hot + workload.cold {
            try await workload.create(id, closesIn: 3_600, extensionWindow: 0)
        }
        return workload
    }

    /// Creates an auction; records it whatever the answer (an unknown outcome may still exist).
    func create(_ id: AuctionID, closesIn seconds: Double, extensionWindow: Int) async throws {
        history.record(.auction(WorkloadAuction(auction: id, at: history.now)))
        let body: [String: Any] = [
            "id": id.rawValue, "title": "Chaos lot \(id.rawValue)", "currency": Self.currency, "startingPrice": 1_000,
            "closesAt": Date().addingTimeInterval(seconds).formatted(.iso8601),
            "extensionWindowSeconds": extensionWindow,
        ]
        let nodes = cluster.nodes.map(\.http)
        _ = try await Self.retrying(nodes) { node in
            do {
                return try await APIClient(base: node, token: sellerToken).call(
                    "POST", "/v1/auctions", json: body, timeout: 5)
            } catch let failure as APIClient.Failure where failure.status == 409 {
                return [:]  // created by an earlier attempt
            }
        }
        minimum.withLock { $0[id] = 1_000 }
    }

    /// Runs `clients` bidding loops until `deadline` (or `maxOperations`), and a creator of short
    /// soft-close auctions every 10 s.
    func run(clients: Int, until deadline: ContinuousClock.Instant, maxOperations: Int) async {
        await withTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask { await self.bidLoop(client: client, until: deadline, maxOperations: maxOperations) }
            }
            group.addTask {
                var round = 0
                while ContinuousClock.now < deadline.advanced(by: .seconds(-20)) {
                    for lot in 0..<3 {
                        let id = AuctionID(rawValue: "s\(self.seed)-short-\(round)-\(lot)")!
                        let seconds = 8.0 + Double((round * 3 + lot) % 10)
                        if (try? await self.create(id, closesIn: seconds, extensionWindow: 3)) != nil {
                            self.short.withLock { $0.append((id, Date().addingTimeInterval(seconds))) }
                        }
                    }
                    round += 1
                    try? await Task.sleep(for: .seconds(10))
                }
            }
        }
    }

    private func bidLoop(client: Int, until deadline: ContinuousClock.Instant, maxOperations: Int) async {
        var random = SeededRandom(seed: seed &+ UInt64(client) &* 7_919)
        var sequence = 0
        let nodes = cluster.nodes.map(\.http)
        while ContinuousClock.now < deadline, operations.load(ordering: .relaxed) < maxOperations {
            let auction = pickAuction(&random)
            let bidder = bidders[Int(random.next() % UInt64(bidders.count))]
            sequence += 1
            let bidId = BidID(rawValue: "c\(client)-\(sequence)")!
            let floor = minimum.withLock { $0[auction] } ?? 1_000
            let maximum = floor + Int64(random.next() % 4) * 100
            var node = Int(random.next() % UInt64(nodes.count))
            // The same bid id until the outcome is known, at most three times, each on another node.
            for _ in 0..<3 {
                let outcome = await send(
                    client: client, node: nodes[node], auction: auction, bidId: bidId, bidder: bidder, maximum: maximum)
                if outcome != .unknown { break }
                node = (node + 1) % nodes.count
            }
        }
    }

    private func pickAuction(_ random: inout SeededRandom) -> AuctionID {
        let roll = random.next() % 100
        if roll < 25 {
            let open = short.withLock { $0.filter { $0.endsAt > Date().addingTimeInterval(-5) }.map(\.id) }
            if !open.isEmpty { return open[Int(random.next() % UInt64(open.count))] }
        }
        if roll < 85 { return hot[Int(random.next() % UInt64(hot.count))] }
        return cold[Int(random.next() % UInt64(cold.count))]
    }

    /// One request, recorded with its outcome.
    private func send(
        client: Int, node: String, auction: AuctionID, bidId: BidID, bidder: (id: UserID, token: String), maximum: Int64
    ) async
        -> HistoryOperation.Outcome
    {
        operations.add(1, ordering: .relaxed)
        let invoked = history.now
        var operation = HistoryOperation(
            client: client, node: node, auction: auction, bidId: bidId, bidder: bidder.id, maximum: maximum,
            invokedAt: invoked,
            completedAt: invoked, outcome: .unknown)
        do {
            let answer = try await APIClient(base: node, token: bidder.token).call(
                "POST", "/v1/auctions/\(auction)/bids",
                json: ["bidId": bidId.rawValue, "maximum": maximum, "currency": Self.currency],
                // Each request's own outcome is what the history records; the loop resends itself.
                timeout: 5, retries: 0)
            operation.outcome = .ok
            operation.seq = (answer["seq"] as? NSNumber)?.int64Value
            if let view = answer["auction"] as? [String: Any], let seq = (view["seq"] as? NSNumber)?.int64Value,
                let price = (view["price"] as? NSNumber)?.int64Value,
                let count = (view["bidCount"] as? NSNumber)?.intValue
            {
                // Others appear by paddle only: the answered bidder leads when the leader's paddle is theirs.
                let leaderPaddle = (view["leaderPaddle"] as? NSNumber)?.intValue
                let myPaddle = (answer["paddle"] as? NSNumber)?.intValue
                operation.shown = ShownState(
                    seq: seq, price: price,
                    leader: leaderPaddle == nil ? .nobody : leaderPaddle == myPaddle ? .requester : .another,
                    bidCount: count)
                if let next = (view["minimumNextBid"] as? NSNumber)?.int64Value { raiseMinimum(auction, to: next) }
            }
        } catch let failure as APIClient.Failure {
            operation.code = failure.body["code"] as? String ?? "http_\(failure.status)"
            switch failure.status {
            case 503, 500, 502, 504, 0: operation.outcome = .unknown
            case 401, 403, 429: operation.outcome = .failed
            default: operation.outcome = .rejected
            }
            if let minimum = (failure.body["minimum"] as? String).flatMap(Int64.init)
                ?? (failure.body["minimum"] as? NSNumber)?.int64Value
            {
                raiseMinimum(auction, to: minimum)
            }
        } catch {
            operation.code = "\(type(of: error))"
            operation.outcome = .unknown
        }
        operation.completedAt = history.now
        history.record(.operation(operation))
        return operation.outcome
    }

    private func raiseMinimum(_ auction: AuctionID, to value: Int64) {
        minimum.withLock { $0[auction] = max($0[auction] ?? 0, value) }
    }

    /// Follows `auction`'s live events over all nodes (a different node order per watcher) and
    /// records every event received, repeats included: the checker judges the servers.
    func watch(_ auction: AuctionID, watcher: Int) async {
        let nodes = cluster.nodes.map(\.http)
        let order = (0..<nodes.count).map { nodes[($0 + watcher) % nodes.count] }
        for await (event, node) in EventStreamClient.follow(
            auction.rawValue, after: 0, nodes: order, attempts: 1_000, dropRepeats: false)
        {
            guard let seq = event.seq else { continue }
            let data = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any] ?? [:]
            history.record(
                .watched(
                    WatchedEvent(
                        watcher: watcher, auction: auction, seq: seq, type: event.type,
                        bidId: (data["bidId"] as? String).flatMap(BidID.init(rawValue:)), node: node, at: history.now)))
            lastWatched.withLock { $0[watcher] = max($0[watcher] ?? 0, seq) }
        }
    }

    /// Follows bidder `index`'s notifications across the nodes (a different node order per bidder;
    /// a reconnect sends the last id seen) and keeps the ids of the end notifications.
    func followNotifications(of index: Int, since: Date) async {
        let bidder = bidders[index]
        let nodes = cluster.nodes.map(\.http)
        let order = (0..<nodes.count).map { nodes[($0 + index) % nodes.count] }
        for await (event, _) in EventStreamClient.notifications(
            token: bidder.token, nodes: order, since: since, attempts: 1_000)
        where ["won", "lost", "cancelled"].contains(event.type) {
            notified.withLock { _ = $0[bidder.id, default: []].insert(event.id) }
        }
    }

    static func retrying<T>(_ nodes: [String], attempts: Int = 40, _ call: (String) async throws -> T) async throws -> T
    {
        var lastError: (any Error)?
        for attempt in 0..<attempts {
            do {
                return try await call(nodes[attempt % nodes.count])
            } catch let failure as APIClient.Failure where failure.status != 503 && failure.status != 0 {
                throw failure
            } catch {
                lastError = error
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        throw lastError ?? ChaosError("no node answered")
    }
}
