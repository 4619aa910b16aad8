import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// Runs CPU-bound test work (seeded simulations, property checks) on a thread of its own, off the
/// threads that run Swift concurrency's jobs.
///
/// On Linux the concurrency runtime's global executor is Dispatch's global queue, which runs one
/// job per core at a time — two here. Swift Testing runs suites in parallel, so a minute of
/// simulation on those threads (or on `DispatchQueue.global()`, the same queue) held both, and
/// every in-process cluster, timer and `eventually` of the other suites stood still until it
/// ended: trivial tests "passed after 47 s" beside the seeded runs, 90 s in clean-clone CI runs.
/// A serial queue of its own targets Dispatch's overcommitting root queue and gets its own thread;
/// the kernel then shares the cores between it and the runtime's threads.
///
/// Every call shares that one thread: ten such loops at once (the simulation's suites run in
/// parallel) left the runtime's two threads a sixth of the machine, and in-process clusters of
/// other suites missed their deadlines. One loop at a time leaves them two thirds.
public func offThePool<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
    try await withTaskExecutorPreference(SerialQueueExecutor.shared) { try await body() }
}

/// A task executor on one serial Dispatch queue, whose thread runs at the lowest priority: the
/// work it does is not in a hurry, and the in-process clusters and deadlines of other suites are.
private final class SerialQueueExecutor: TaskExecutor {
    /// Lowers the calling thread's priority to nice 19 (Linux: per thread).
    static func yieldToOthers() {
        #if os(Linux)
            // Linux keeps the nice value per thread: 0 names the calling one.
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        #endif
    }

    static let shared = SerialQueueExecutor()
    private let queue = DispatchQueue(label: "artpay.test.off-the-pool")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async {
            Self.yieldToOthers()
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
