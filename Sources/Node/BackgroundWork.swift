import Synchronization

/// The node's fire-and-forget work — sweeps, lease releases, read-model catch-ups, epoch notices —
/// each task kept until it ends, so that stopping the node cancels what still runs instead of
/// leaving it to finish against a node that is gone. Invariant: after `cancelAll`, nothing new
/// starts and every task started before is cancelled.
final class BackgroundWork: Sendable {
    private struct State {
        var next = 0
        var running: [Int: Task<Void, Never>] = [:]
        var stopped = false
    }

    private let state = Mutex(State())

    /// Starts `work` unless the work was stopped; it is forgotten when it ends.
    func spawn(_ work: @escaping @Sendable () async -> Void) {
        state.withLock { state in
            guard !state.stopped else { return }
            let id = state.next
            state.next += 1
            state.running[id] = Task { [weak self] in
                await work()
                self?.finished(id)
            }
        }
    }

    /// Cancels every task still running and refuses new ones.
    func cancelAll() {
        let running = state.withLock { state in
            state.stopped = true
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for task in running { task.cancel() }
    }

    /// Tasks started and not ended yet.
    var count: Int { state.withLock { $0.running.count } }

    private func finished(_ id: Int) {
        _ = state.withLock { $0.running.removeValue(forKey: id) }
    }
}
