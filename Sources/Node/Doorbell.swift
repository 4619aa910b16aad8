import Synchronization

/// A timer that can be rung: `wait(upTo:)` returns after the interval or as soon as `ring()` is
/// called, whichever comes first. Why: a loop that waits for a deadline its pure instance computed
/// (the node's membership and chores, the settlement driver's next step) must also wake when an
/// input moves that deadline earlier; polling every few milliseconds instead costs CPU on an idle
/// node and still reacts up to one poll late.
///
/// A ring while nobody waits is kept for the next wait, so no ring is lost between deciding to
/// wait and waiting. One waiter at a time.
final class Doorbell: Sendable {
    private struct State {
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func ring() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.rung = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    func wait(upTo interval: Duration) async {
        let rung = state.withLock { state in
            defer { state.rung = false }
            return state.rung
        }
        guard !rung else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: interval) }
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let ringNow = self.state.withLock { state -> Bool in
                            if state.rung || Task.isCancelled {
                                state.rung = false
                                return true
                            }
                            state.waiter = continuation
                            return false
                        }
                        if ringNow { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                        defer { state.waiter = nil }
                        return state.waiter
                    }
                    waiter?.resume()
                }
            }
            await group.next()
            group.cancelAll()
        }
    }
}
