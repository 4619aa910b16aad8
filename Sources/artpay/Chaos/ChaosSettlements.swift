import ArtPayClient
import AuctionCore
import ChaosCheck
import Foundation
import PostgresNIO
import Storage
import Synchronization

extension ChaosCommand {
    /// After the heal: waits (≤ 90 s) until every sold lot's settlement has finished, then checks the provider's ledger against the final logs (`SettlementCheck`) and
    /// prints the payment figures of the run.
    func settlementChecks(
        cluster: ChaosCluster, workload: ChaosWorkload, configuration: PostgresClient.Configuration
    ) async throws -> SettlementCheck.Report {
        let nodes = cluster.nodes.map(\.http)
        let admin = try await ChaosWorkload.retrying(nodes) {
            try await APIClient(base: $0).loggedIn("chaos-admin", "chaos-admin-password")
        }
        // Buyers pay, defaulters' deadlines (15 s) and offers (15 s) run out: every lot finishes.
        let finished: Set<String> = ["settled", "refunded", "cancelled", "unsold"]
        try? await Self.waitUntil("every sold lot's settlement finishes", seconds: 90) {
            guard
                let answer = try? await APIClient(base: nodes[0], token: admin.token).call(
                    "GET", "/v1/settlements?limit=1000", timeout: 5),
                let all = answer["settlements"] as? [[String: Any]]
            else { return false }
            return all.allSatisfy { finished.contains($0["state"] as? String ?? "") }
        }
        let ledgerAnswer = try await cluster.provider("GET", "/v1/sandbox/ledger")
        let stats = try await cluster.provider("GET", "/v1/sandbox/stats")
        let ledger: [SettlementCheck.Movement] = (ledgerAnswer["data"] as? [[String: Any]] ?? []).compactMap { entry in
            guard let kind = (entry["kind"] as? String).flatMap(SettlementCheck.Movement.Kind.init(rawValue:)),
                let intent = entry["intent"] as? String, let amount = (entry["amount"] as? NSNumber)?.int64Value
            else { return nil }
            let metadata = entry["metadata"] as? [String: String] ?? [:]
            return SettlementCheck.Movement(
                kind: kind, auction: metadata["auction"].flatMap(AuctionID.init(rawValue:)), intent: intent,
                amount: amount, idempotencyKey: entry["idempotencyKey"] as? String)
        }
        let sold = Set(workload.short.withLock { $0.map(\.id) })
        let logs = try await PostgresClient.withRunning(configuration) { client in
            try await CheckCommand.logs(of: sold, from: PostgresEventStore(client: client))
        }
        let report = SettlementCheck.check(
            ledger: ledger, logs: logs, keyConflicts: (stats["keyConflicts"] as? NSNumber)?.intValue ?? 0,
            at: Timestamp(millisecondsSinceEpoch: Int64(Date().timeIntervalSince1970 * 1_000)))
        var calls = 0
        var failures = 0
        var openings = 0
        for node in nodes {
            guard let view = try? await ChaosCluster.getJSON(node + "/v1/cluster"),
                let payments = view["payments"] as? [String: Any]
            else { continue }
            calls += (payments["providerCalls"] as? NSNumber)?.intValue ?? 0
            failures += (payments["providerFailures"] as? NSNumber)?.intValue ?? 0
            openings += (payments["breakerOpenings"] as? NSNumber)?.intValue ?? 0
        }
        let buyers = workload.payments.withLock { $0 }
        var blocked = 0
        for bidder in workload.bidders {
            if let standing = try? await APIClient(base: nodes[0], token: admin.token).call(
                "GET", "/v1/users/\(bidder.id.rawValue)/bidding-blocks", timeout: 5)
            {
                blocked += (standing["blocks"] as? [Any])?.count ?? 0
            }
        }
        say(
            "chaos: buyers: \(buyers.cardsOnFile) of \(workload.bidders.count) kept a card on file (charged by the owners); "
                + "\(blocked) blocks from bidding after defaults, \(buyers.blocksLifted) lifted by the admin during the run")
        let injected = (stats["faultsInjected"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        say(
            "chaos: payments: \(ledger.count) money movements at the provider; provider calls since each node's last start "
                + "\(calls), \(failures) failed and resent with their key, breaker openings \(openings); faults injected by "
                + "the provider: \(injected.isEmpty ? "none" : injected)")
        return report
    }
}

/// Samples each node's payment-provider circuit breaker (`/v1/cluster` → `payments.breakerState`)
/// once a second during a run and keeps every change, so the run shows the breakers opening during
/// provider outages and closing after them.
final class BreakerTimeline: Sendable {
    struct Change: Sendable {
        var second: Double
        var node: String
        var from: String
        var to: String
    }

    private let changes = Mutex<[Change]>([])
    private let last = Mutex<[String: String]>([:])
    private let started = ContinuousClock.now

    /// Samples until cancelled.
    func sample(_ nodes: [ChaosCluster.Node]) async {
        while !Task.isCancelled {
            for node in nodes {
                guard let view = try? await ChaosCluster.getJSON(node.http + "/v1/cluster"),
                    let state = (view["payments"] as? [String: Any])?["breakerState"] as? String
                else { continue }
                let elapsed = ContinuousClock.now - started
                let second = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                let previous = last.withLock { last in
                    defer { last[node.id] = state }
                    return last[node.id]
                }
                // A restarted node starts closed: its first sample is a change only if it is not.
                if previous ?? "closed" != state {
                    changes.withLock {
                        $0.append(Change(second: second, node: node.id, from: previous ?? "closed", to: state))
                    }
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Notes a provider outage starting or ending, between the breakers' changes.
    func mark(_ what: String) {
        let elapsed = ContinuousClock.now - started
        let second = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        changes.withLock { $0.append(Change(second: second, node: "provider", from: "", to: what)) }
    }

    var recorded: [Change] { changes.withLock { $0 } }
    /// Changes of the breakers themselves (not the provider's marks).
    var transitions: [Change] { recorded.filter { $0.node != "provider" } }
    var finalStates: [String: String] { last.withLock { $0 } }

    /// One line per change, then the state each node ended in.
    func report() -> String {
        var lines = recorded.map { change in
            change.node == "provider"
                ? String(format: "%7.1f s  provider %@", change.second, change.to)
                : String(format: "%7.1f s  %@  %@ → %@", change.second, change.node, change.from, change.to)
        }
        lines.append(
            "at the end: "
                + finalStates.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
