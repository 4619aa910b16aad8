import Dispatch

/// Runs CPU-bound test work (seeded simulations, property checks) on a thread of its own, off the
/// threads that run Swift concurrency's jobs.
///
/// On Linux the concurrency runtime's global executor is Dispatch's global queue, which runs one
/// job per core at a time — two here. Swift Testing runs suites in parallel, so a minute of
/// simulation on those threads (or on `DispatchQueue.global()`, the same queue) held both, and
/// every in-process cluster, timer and `eventually` of the other suites stood still until it
/// ended: trivial tests "passed after 47 s" beside the seeded runs, 90 s in clean-clone CI runs.
/// A serial queue of its own targets Dispatch's overcommitting root queue and gets its own thread;
/// the kernel then shares the cores between it and the runtime's threads. Callers bound how many
/// such calls run at once (one per core for the simulation).
public func offThePool<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(SerialQueueExecutor()) { try await body() }
}

/// A task executor on a serial Dispatch queue of its own.
private final class SerialQueueExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "artpay.test.off-the-pool")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
