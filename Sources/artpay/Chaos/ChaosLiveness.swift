import ArtPayClient
import AuctionCore
import ClusterCore
import Foundation

/// What the history checker cannot see: whether the cluster works again once the faults heal.
/// Safety held in runs where an auction stayed wedged after a PostgreSQL restart; these checks
/// fail such a run, naming the auction and its owner.
enum ChaosLiveness {
    /// Sends a probe bid to every auction of the run through every node and requires an answer
    /// (any answer but 503) within `bound`. The probe offers 1 minor unit, so it is refused
    /// (`below_minimum`, or `auction_closed`) and changes nothing — but only an owner that serves
    /// the auction can refuse it. Returns one line per auction and node that did not answer.
    static func probeEveryAuction(
        _ auctions: [AuctionID], through cluster: ChaosCluster, token: String, bound: Duration = .seconds(5)
    ) async -> [String] {
        let nodes = cluster.nodes
        let ids = nodes.map { NodeID(rawValue: $0.id)! }
        let shards = ShardMap()
        return await withTaskGroup(of: String?.self) { group in
            var failures: [String] = []
            var started = 0
            for auction in auctions {
                for node in nodes {
                    // At most 16 probes at a time.
                    if started >= 16, let done = await group.next(), let failure = done { failures.append(failure) }
                    started += 1
                    group.addTask {
                        let answered = await probe(auction, at: node.http, token: token, bound: bound)
                        guard let problem = answered else { return nil }
                        let owner = Placement.owner(of: shards.shard(of: auction), among: ids)?.rawValue ?? "?"
                        return "\(auction) (owner \(owner)) through \(node.id): \(problem)"
                    }
                }
            }
            for await failure in group { if let failure { failures.append(failure) } }
            return failures.sorted()
        }
    }

    /// The watchdog's counts (`artpay_commands_overdue_total`, since each node's last start): commands
    /// that answered only after the forward timeout — each one a client that gave up on its owner.
    static func overdueCommands(through cluster: ChaosCluster) async -> [String: Int] {
        var counts: [String: Int] = [:]
        for node in cluster.nodes {
            guard let answer = try? await APIClient.send("GET", node.http + "/metrics", timeout: 2) else { continue }
            let line = String(decoding: answer.body, as: UTF8.self).split(separator: "\n")
                .first { $0.hasPrefix("artpay_commands_overdue_total ") }
            counts[node.id] = line.flatMap { Int($0.split(separator: " ").last ?? "") }
        }
        return counts
    }

    /// nil when the auction answered within `bound`; otherwise what happened.
    private static func probe(_ auction: AuctionID, at node: String, token: String, bound: Duration) async -> String? {
        let deadline = ContinuousClock.now.advanced(by: bound)
        var last = "no answer"
        while ContinuousClock.now < deadline {
            let left = deadline - ContinuousClock.now
            let seconds = Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18
            do {
                _ = try await APIClient(base: node, token: token).call(
                    "POST", "/v1/auctions/\(auction.rawValue)/bids",
                    json: ["bidId": "liveness-probe", "maximum": 1, "currency": ChaosWorkload.currency],
                    timeout: max(0.2, seconds))
                return nil  // accepted would be a bug of its own (the checker sees the log); it answered
            } catch let failure as APIClient.Failure where failure.status != 503 && failure.status != 0 {
                return nil
            } catch let failure as APIClient.Failure {
                // The problem's code and detail say which part did not answer (owner, store, admission).
                last = "HTTP \(failure.status) \(failure)"
            } catch {
                last = "\(error)"
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return "\(last) within \(bound)"
    }

    /// Every node's read model must come to show each auction as its log does (seq and status);
    /// polls up to `bound` (catch-up runs every 2 s). Returns one line per node and auction that
    /// stayed behind, or differs.
    static func compareReadModels(
        _ auctions: [AuctionID], through cluster: ChaosCluster, bound: Duration = .seconds(20)
    ) async -> [String] {
        let deadline = ContinuousClock.now.advanced(by: bound)
        var differences: [String] = []
        repeat {
            differences = []
            for auction in auctions {
                // The log's view, read again each round: a short auction may close meanwhile.
                let truth = try? await ChaosWorkload.retrying(cluster.nodes.map(\.http)) {
                    try await APIClient(base: $0).call(
                        "GET", "/v1/auctions/\(auction.rawValue)?consistent=true", timeout: 5)
                }
                guard let truth, let expectedSeq = truth["seq"] as? Int, let expected = truth["status"] as? String
                else {
                    differences.append("\(auction): its log could not be read")
                    continue
                }
                for node in cluster.nodes {
                    let view = try? await APIClient(base: node.http).call(
                        "GET", "/v1/auctions/\(auction.rawValue)", timeout: 5)
                    let seq = view?["seq"] as? Int
                    let status = view?["status"] as? String
                    if seq != expectedSeq || status != expected {
                        differences.append(
                            "\(node.id) shows \(auction) at seq \(seq.map(String.init) ?? "-") \(status ?? "-"), "
                                + "the log at seq \(expectedSeq) \(expected)")
                    }
                }
            }
            if differences.isEmpty { return [] }
            try? await Task.sleep(for: .milliseconds(500))
        } while ContinuousClock.now < deadline
        return differences
    }
}
