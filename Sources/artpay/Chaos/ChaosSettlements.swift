import ArtPayClient
import AuctionCore
import ChaosCheck
import Foundation
import PostgresNIO
import Storage

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
        let injected = (stats["faultsInjected"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }
            .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        say(
            "chaos: payments: \(ledger.count) money movements at the provider; provider calls since each node's last start "
                + "\(calls), \(failures) failed and resent with their key, breaker openings \(openings); faults injected by "
                + "the provider: \(injected.isEmpty ? "none" : injected)")
        return report
    }
}
