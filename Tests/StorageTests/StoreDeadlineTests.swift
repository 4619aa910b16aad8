import AuctionCore
import PostgresNIO
import Storage
import TestSupport
import Testing

/// Every PostgreSQL call has a deadline: a call the server does not answer (here: one waiting on a
/// row another transaction holds) fails with `unavailable` on time instead of holding its caller.
@Suite struct StoreDeadlineTests {
    @Test func aCallTheServerDoesNotAnswer_failsAtItsDeadline() async throws {
        let pg = try TestPostgres.fromEnvironment()
        try await pg.withFreshDatabase { client, _ in
            let patient = PostgresEventStore(client: client)
            try await patient.migrate()
            let shard = ShardID(3)
            _ = try await patient.acquire(shard: shard, node: NodeID(rawValue: "n1")!)
            // Another session holds the lease row for a few seconds.
            let holder = Task {
                try await client.query(
                    "WITH locked AS (SELECT shard FROM shard_leases WHERE shard = 3 FOR UPDATE) SELECT pg_sleep(4) FROM locked"
                )
            }
            defer { holder.cancel() }
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while ContinuousClock.now < deadline {
                var waiting = 0
                for try await count in try await client.query(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'WITH locked AS%' AND state = 'active'"
                ).decode(Int64.self) {
                    waiting = Int(count)
                }
                if waiting > 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            let hasty = PostgresEventStore(client: client, timeout: .milliseconds(300))
            let started = ContinuousClock.now
            await #expect(throws: StorageError.self) {
                _ = try await hasty.acquire(shard: shard, node: NodeID(rawValue: "n2")!)
            }
            #expect(ContinuousClock.now - started < .seconds(2), "answered at the deadline, not when the row was free")
            _ = try await holder.value
        }
    }
}
