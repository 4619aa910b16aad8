import NIOCore
import NIOPosix
import Synchronization

/// An operation did not finish within its time limit. Its outcome is unknown: it may still
/// complete and its effects may still happen, so the caller resolves it from the durable state
/// (an append that timed out is treated like any failed append: the auction reloads its log).
public struct DeadlineExceeded: Error, Hashable, Sendable, CustomStringConvertible {
    public var limit: Duration

    public var description: String { "no answer within \(limit)" }
}

/// Runs `operation`, and returns what it returns, or throws ``DeadlineExceeded`` once `limit` has
/// passed — whichever comes first; on expiry the operation is cancelled and left behind.
///
/// Why not a task group racing a sleep: a group waits for all its children, so an operation that
/// ignores cancellation (a query on a connection whose peer went silent) would hold the caller as
/// long as it hangs. Here the caller is answered on time, always. Cancelling the caller cancels
/// the operation and answers with `CancellationError`.
public func withDeadline<T: Sendable>(
    _ limit: Duration, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await firstAnswer(operation) { fail in
        let nanoseconds = limit.components.seconds * 1_000_000_000 + limit.components.attoseconds / 1_000_000_000
        let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .nanoseconds(nanoseconds)) {
            fail(DeadlineExceeded(limit: limit))
        }
        return { timer.cancel() }
    }
}

/// Runs `operation` and returns what it returns, unless `interrupt` fails it first: `interrupt`
/// gets a `fail` callback (calling it after the answer does nothing) and returns how to disarm
/// itself once the answer is in. Whatever comes first answers the caller; a failure cancels the
/// operation and leaves it behind. The caller's cancellation answers `CancellationError`.
func firstAnswer<T: Sendable>(
    _ operation: @escaping @Sendable () async throws -> T,
    interruptedBy interrupt: @escaping @Sendable (_ fail: @escaping @Sendable (any Error) -> Void) -> (
        @Sendable () -> Void
    )
) async throws -> T {
    let race = Race<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation: continuation, operation: operation, interrupt: interrupt)
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The one answer of ``firstAnswer(_:interruptedBy:)``: the first of the operation, the
/// interruption and a cancellation to finish resumes the caller; the others find nothing to do.
private final class Race<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        var disarm: (@Sendable () -> Void)?
        var finished = false
        var pendingOutcome: Result<T, any Error>?
    }

    private let state = Mutex(State())

    func start(
        continuation: CheckedContinuation<T, any Error>, operation: @escaping @Sendable () async throws -> T,
        interrupt: @escaping @Sendable (_ fail: @escaping @Sendable (any Error) -> Void) -> (@Sendable () -> Void)
    ) {
        let early = state.withLock { state -> Result<T, any Error>? in
            // Cancelled before it started.
            if let outcome = state.pendingOutcome { return outcome }
            state.continuation = continuation
            return nil
        }
        if let early {
            continuation.resume(with: early)
            return
        }
        let work = Task {
            do {
                self.finish(.success(try await operation()))
            } catch {
                self.finish(.failure(error))
            }
        }
        let disarm = interrupt { self.finish(.failure($0)) }
        let finishedMeanwhile = state.withLock { state -> Bool in
            state.work = work
            state.disarm = disarm
            return state.finished
        }
        if finishedMeanwhile {
            disarm()
            work.cancel()
        }
    }

    func finish(_ outcome: Result<T, any Error>) {
        let (continuation, work, disarm) = state.withLock {
            state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?, (@Sendable () -> Void)?) in
            guard !state.finished else { return (nil, nil, nil) }
            state.finished = true
            guard let continuation = state.continuation else {
                state.pendingOutcome = outcome
                return (nil, nil, nil)
            }
            state.continuation = nil
            return (continuation, state.work, state.disarm)
        }
        guard let continuation else { return }
        disarm?()
        if case .failure = outcome { work?.cancel() }
        continuation.resume(with: outcome)
    }
}
