import AuctionCore
import Metrics
import MetricsTestKit
import Node
import Storage
import TestSupport
import Testing

/// What a node counts and times as it happens — forwards, log appends, shard leases, fenced
/// appends — read from swift-metrics' `TestMetrics`, one per node.
@Suite(.serialized) struct NodeMetricsTests {
    static func bid(_ id: String, _ maximum: Int64) -> AuctionCommand {
        .placeBid(
            PlaceBid(
                bidId: BidID(rawValue: id)!, bidderId: UserID(rawValue: "alice")!,
                maximum: Money(minorUnits: maximum, currency: .eur)))
    }

    @Test func forwardsAndAppends_areCountedAndTimed_onTheNodeThatDidThem() async throws {
        try await withSQLiteStore { store, _ in
            let metrics = [TestMetrics(), TestMetrics()]
            // Deadlines far above a busy machine's stalls: this test counts, it does not time.
            let cluster = try await LocalCluster.start(
                count: 2, store: store, forwardTimeout: .seconds(20), retryBudget: .seconds(60), metrics: metrics)
            defer { Task { await cluster.stop() } }
            try await cluster.converged()
            let entry = cluster.nodes[0].node
            for index in 0..<12 {
                let id = AuctionID(rawValue: "lot-\(index)")!
                #expect(await entry.submit(.create(ClusterNodeTests.terms(id)), to: id).value?.seq == 1)
                #expect(await entry.submit(Self.bid("b-\(index)", 2_000), to: id).value?.seq == 2)
            }
            let forwarded = await entry.counters.forwardedCommands
            #expect(forwarded > 0, "some of 12 lots are owned by the other node")
            #expect(metrics[0].counterTotal(label: "artpay_forwarded_commands_total") == Int64(forwarded))
            #expect(try metrics[0].expectTimer("artpay_forwarded_command_duration_seconds").values.count == forwarded)
            #expect(
                metrics[0].counterTotal(label: "artpay_forwarded_command_failures_total")
                    == Int64(await entry.counters.forwardFailures))
            #expect(metrics[1].counterTotal(label: "artpay_forwarded_commands_total") == 0, "node 2 forwarded nothing")

            // 24 commands, each one entry of a log append on its owner.
            let entries = metrics.map { $0.counterTotal(label: "artpay_log_appended_entries_total") }
            #expect(entries.reduce(0, +) == 24, "\(entries)")
            for (node, metrics) in metrics.enumerated() {
                let appends = metrics.counterTotal(label: "artpay_log_appends_total")
                let sizes = try metrics.expectRecorder("artpay_log_append_batch_size").values
                #expect(sizes.count == Int(appends), "node \(node + 1): one batch size per append")
                #expect(Int64(sizes.reduce(0, +)) == entries[node], "node \(node + 1): sizes add up to the entries")
                #expect(try metrics.expectTimer("artpay_log_append_duration_seconds").values.count == Int(appends))
                #expect(metrics.counterTotal(label: "artpay_log_append_failures_total") == 0)
            }
            let acquired = metrics.map { $0.counterTotal(label: "artpay_shard_acquisitions_total") }
            let held = [
                await cluster.nodes[0].node.snapshot.shardsHeld.count,
                await cluster.nodes[1].node.snapshot.shardsHeld.count,
            ]
            #expect(acquired == held.map(Int64.init), "every lease held was counted once as taken")
            await cluster.stop()
        }
    }

    @Test func anAppendFencedByAnotherNode_isCountedOnce() async throws {
        let metrics = TestMetrics()
        try await FencedHoldOffTests.withContestedShard(
            retryBudget: .milliseconds(300), fencedHoldOff: .seconds(60), metrics: metrics
        ) { node, _, id, _, _ in
            #expect(metrics.counterTotal(label: "artpay_fenced_appends_total") == 0)
            #expect(metrics.counterTotal(label: "artpay_shard_acquisitions_total") == 1, "the create took the lease")
            _ = await node.submit(Self.bid("b1", 2_000), to: id)
            #expect(metrics.counterTotal(label: "artpay_fenced_appends_total") == 1)
            _ = await node.submit(Self.bid("b2", 2_500), to: id)
            #expect(
                metrics.counterTotal(label: "artpay_fenced_appends_total") == 1,
                "held off: the second bid does not reach the store")
        }
    }

    @Test func everySeriesInTheRegistry_hasHelpText() async throws {
        try await withSQLiteStore { store, _ in
            let cluster = try await LocalCluster.start(count: 2, store: store)
            defer { Task { await cluster.stop() } }
            try await cluster.converged()
            let entry = cluster.nodes[0].node
            for index in 0..<6 {
                let id = AuctionID(rawValue: "lot-\(index)")!
                _ = await entry.submit(.create(ClusterNodeTests.terms(id)), to: id)
            }
            let text = await entry.metricsText()
            let families = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map {
                $0.split(separator: " ")[2]
            }
            #expect(families.contains("artpay_log_append_duration_seconds"))
            #expect(families.contains("artpay_read_model_lag_seconds"))
            for family in families {
                #expect(text.contains("# HELP \(family) "), "\(family) has no help text")
            }
            await cluster.stop()
        }
    }
}
