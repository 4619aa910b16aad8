public import Metrics
public import Storage

/// Group commit across auctions: the node's single path to `EventStore.append`.
///
/// Entries handed in while batches are in flight wait and go out together in the next batch (one
/// transaction, one round trip), with at most `maximumBatchesInFlight` transactions outstanding.
/// Under load this turns many small appends into few large ones; when idle, an entry goes out at
/// once, so latency stays one round trip.
///
/// Invariants: each entry's caller hears exactly one result, only after its batch committed or
/// failed; an entry refused because of another entry's shard or seq is retried in a batch without
/// the offender, so one fenced shard never fails the other auctions of the node. Callers keep at
/// most one entry per auction in flight (the auction actor does), so per-auction order holds.
public actor LogWriter {
    public struct Configuration: Sendable {
        /// Concurrent transactions; keep it at or below the store's connection count. One: what
        /// PostgreSQL spends per transaction (plan, function call, commit) outweighs the waiting,
        /// so fewer, larger batches go further — measured with `scripts/bench http` on 1,000 lots,
        /// three nodes back to back: 1,498 accepted bids/s with 4 in flight (PostgreSQL 45 % of a
        /// core), 1,704 with 2 (36 %), 1,943 with 1 (27 %); the hot lot alike within noise.
        public var maximumBatchesInFlight: Int = 1
        /// Entries per transaction.
        public var maximumEntriesPerBatch: Int = 512

        public init(maximumBatchesInFlight: Int = 1, maximumEntriesPerBatch: Int = 512) {
            self.maximumBatchesInFlight = maximumBatchesInFlight
            self.maximumEntriesPerBatch = maximumEntriesPerBatch
        }
    }

    private struct Item {
        var entry: AppendEntry
        var continuation: CheckedContinuation<Result<Void, StorageError>, Never>
    }

    private let store: any EventStore
    private let configuration: Configuration
    private var queue: [Item] = []
    private var inFlight = 0

    /// Batches committed and entries written, for benchmarks.
    public private(set) var committedBatches = 0
    public private(set) var committedEntries = 0
    private let metrics: WritePathMetrics

    /// What an operator watches of the store's write path: `artpay_log_appends_total`,
    /// `artpay_log_appended_entries_total`, the batch size and the time of each transaction.
    private struct WritePathMetrics {
        let appends: Counter
        let entries: Counter
        let failures: Counter
        let duration: Timer
        let batchSize: Recorder

        init(factory: any MetricsFactory) {
            appends = Counter(label: "artpay_log_appends_total", factory: factory)
            entries = Counter(label: "artpay_log_appended_entries_total", factory: factory)
            failures = Counter(label: "artpay_log_append_failures_total", factory: factory)
            duration = Timer(label: "artpay_log_append_duration_seconds", factory: factory)
            batchSize = Recorder(label: "artpay_log_append_batch_size", factory: factory)
        }
    }

    /// - Parameter metrics: where the write path's series go (a node passes its registry's factory).
    public init(
        store: any EventStore, configuration: Configuration = Configuration(),
        metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        self.store = store
        self.configuration = configuration
        self.metrics = WritePathMetrics(factory: metrics)
    }

    /// Appends `entry` durably, in a batch with whatever else is waiting.
    public func append(_ entry: AppendEntry) async throws(StorageError) {
        let result = await withCheckedContinuation { continuation in
            queue.append(Item(entry: entry, continuation: continuation))
            startBatches()
        }
        try result.get()
    }

    private func startBatches() {
        while inFlight < configuration.maximumBatchesInFlight, !queue.isEmpty {
            let count = min(queue.count, configuration.maximumEntriesPerBatch)
            let batch = Array(queue.prefix(count))
            queue.removeFirst(count)
            inFlight += 1
            Task { await self.commit(batch) }
        }
    }

    private func commit(_ items: [Item]) async {
        var remaining = items
        while !remaining.isEmpty {
            let started = ContinuousClock.now
            do {
                try await store.append(AppendBatch(entries: remaining.map(\.entry)))
                metrics.duration.record(duration: ContinuousClock.now - started)
                metrics.appends.increment()
                metrics.entries.increment(by: remaining.count)
                metrics.batchSize.record(remaining.count)
                committedBatches += 1
                committedEntries += remaining.count
                for item in remaining { item.continuation.resume(returning: .success(())) }
                remaining = []
            } catch {
                metrics.duration.record(duration: ContinuousClock.now - started)
                metrics.failures.increment()
                let (refused, rest) = split(remaining, by: error)
                for item in refused { item.continuation.resume(returning: .failure(error)) }
                remaining = rest
            }
        }
        inFlight -= 1
        startBatches()
    }

    /// The items `error` is about, and the others, which may be retried without them. When the
    /// error cannot be pinned to some items (the store is down), it is about all of them.
    private func split(_ items: [Item], by error: StorageError) -> (refused: [Item], rest: [Item]) {
        let isRefused: (Item) -> Bool
        switch error {
        case .fenced(let shards):
            let fenced = Set(shards.map(\.shard))
            isRefused = { fenced.contains($0.entry.shard) }
        case .seqConflict(let auction, _, .some):
            isRefused = { $0.entry.auction == auction }
        default:
            return (items, [])
        }
        let refused = items.filter(isRefused)
        // Nothing matched: the error cannot be pinned, so retrying would loop.
        guard !refused.isEmpty else { return (items, []) }
        return (refused, items.filter { !isRefused($0) })
    }
}
