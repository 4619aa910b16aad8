import Synchronization
import Testing

@testable import Node

/// The node's side tasks have an owner: they end when the node stops, and none starts after.
@Suite struct BackgroundWorkTests {
    final class Flags: Sendable {
        let ended = Atomic<Int>(0)
    }

    @Test func cancelAll_endsWhatRuns_andNothingStartsAfter() async throws {
        let work = BackgroundWork()
        let flags = Flags()
        for _ in 0..<5 {
            work.spawn {
                try? await Task.sleep(for: .seconds(600))
                flags.ended.add(1, ordering: .relaxed)
            }
        }
        work.spawn {}
        try await poll("the quick task is forgotten once it ends") { work.count == 5 }
        work.cancelAll()
        try await poll("the sleeping tasks end when cancelled") { flags.ended.load(ordering: .relaxed) == 5 }
        work.spawn { try? await Task.sleep(for: .seconds(600)) }
        #expect(work.count == 0, "nothing starts after cancelAll")
    }

    private func poll(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("not within 20 s: \(what)")
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
