public import AuctionCore
import Foundation
import Synchronization

/// Where the runtime gets the time and waits for deadlines (close timers).
///
/// Why injected: the auction rules take `now` as an input; the shell around them takes it from
/// here, so tests and simulations drive time by hand (`ManualClock`) and never sleep.
public protocol EngineClock: Sendable {
    func now() -> Timestamp
    /// Returns once `now() >= deadline`; throws `CancellationError` when the task is cancelled.
    func sleep(until deadline: Timestamp) async throws
}

/// Wall-clock time (the auction's `opensAt`/`closesAt` are wall-clock instants).
public struct SystemClock: EngineClock {
    public init() {}

    public func now() -> Timestamp {
        Timestamp(millisecondsSinceEpoch: Int64((Date().timeIntervalSince1970 * 1_000).rounded(.down)))
    }

    public func sleep(until deadline: Timestamp) async throws {
        while true {
            let remaining = now().duration(to: deadline)
            if remaining <= .zero { return }
            try await Task.sleep(for: remaining)
        }
    }
}

/// A clock that moves only when told to. Sleepers wake when `advance` passes their deadline.
public final class ManualClock: EngineClock {
    private struct State {
        var now: Timestamp
        var nextSleeper = 0
        var sleepers: [Int: (deadline: Timestamp, continuation: CheckedContinuation<Void, any Error>)] = [:]
    }

    private let state: Mutex<State>

    public init(now: Timestamp) {
        state = Mutex(State(now: now))
    }

    public func now() -> Timestamp { state.withLock { $0.now } }

    /// How many tasks are waiting in `sleep(until:)`.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    /// Moves the clock to `instant` (never backwards) and wakes every sleeper whose deadline passed.
    public func advance(to instant: Timestamp) {
        let due = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            state.now = max(state.now, instant)
            let now = state.now
            let ready = state.sleepers.filter { $0.value.deadline <= now }
            for key in ready.keys { state.sleepers[key] = nil }
            return ready.map(\.value.continuation)
        }
        for continuation in due { continuation.resume() }
    }

    public func advance(by duration: Duration) {
        advance(to: now().advanced(by: duration))
    }

    public func sleep(until deadline: Timestamp) async throws {
        let id = state.withLock { state -> Int in
            state.nextSleeper += 1
            return state.nextSleeper
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { state -> Bool in
                    if Task.isCancelled { return true }
                    if deadline <= state.now { return true }
                    state.sleepers[id] = (deadline, continuation)
                    return false
                }
                if resumeNow {
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
            }
        } onCancel: {
            let continuation = state.withLock { $0.sleepers.removeValue(forKey: id)?.continuation }
            continuation?.resume(throwing: CancellationError())
        }
    }
}
