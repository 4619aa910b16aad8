public import AuctionCore
public import Storage

/// The single writer of one auction on the node that owns its shard.
///
/// It decides each command against the in-memory state (the pure `Auction`), and group-commits:
/// events decided while an append is in flight go out together in the next one. Every answer —
/// acceptance, replay, or rejection — is given only once the state it was decided against is
/// durable, so a client never sees a result that a crash could take back (invariant 1).
///
/// Invariants: at most one append of this auction is in flight; `durableSeq <= auction.seq` and the
/// difference is exactly the events waiting to be appended; after a fenced append the actor never
/// writes again and answers `notOwner`; after any other failed append it reloads from the store
/// before deciding anything else (the failed append may or may not have committed).
public actor AuctionActor {
    /// The most events a snapshot waits for because of the receipts it holds: a bound on what a
    /// reload of a young, very busy lot replays beyond the quarter-of-the-log rule.
    static let receiptWaitLimit: Int64 = 10_000

    public struct Configuration: Sendable {
        /// Write a snapshot at least every this many events. Longer logs wait for more: a quarter
        /// of their length, and as many events as the snapshot holds receipts whole (its bulk; at
        /// most `receiptWaitLimit`), so the cost of snapshots stays about a constant per event
        /// however busy the lot — a busy fresh lot snapshotting every 100 events wrote its last two
        /// minutes of receipts again each time — while a reload replays a bounded tail.
        public var snapshotEvery: Int64 = 100
        /// How long the close timer waits before retrying a close the store could not record.
        public var closeRetryDelay: Duration = .seconds(1)

        public init(snapshotEvery: Int64 = 100, closeRetryDelay: Duration = .seconds(1)) {
            self.snapshotEvery = snapshotEvery
            self.closeRetryDelay = closeRetryDelay
        }
    }

    private enum Mode: Equatable {
        case serving
        case needsRecovery
        case fenced
        case stopped
    }

    private struct Waiter {
        var seq: Int64
        var outcome: Result<CommandAccepted, EngineError>
        var continuation: CheckedContinuation<Result<CommandAccepted, EngineError>, Never>
    }

    public nonisolated let id: AuctionID
    public nonisolated let shard: ShardID
    public nonisolated let epoch: Epoch

    private var auction: Auction
    private var durableSeq: Int64
    private var lastSnapshotSeq: Int64
    private var pendingEvents: [AuctionEvent] = []
    private var waiters: [Waiter] = []
    private var flushing = false
    private var mode = Mode.serving
    private var recovery: Task<EngineError?, Never>?
    private var closeTimer: Task<Void, Never>?
    private var closeTimerDeadline: Timestamp?

    private let configuration: Configuration
    private let writer: LogWriter
    private let store: any EventStore
    private let clock: any EngineClock
    private let onDurable: (@Sendable ([StoredEvent]) -> Void)?

    /// An actor serving `stored` (as loaded from the store) under the shard lease `epoch`.
    public init(
        id: AuctionID, shard: ShardID, epoch: Epoch, stored: StoredAuction, writer: LogWriter, store: any EventStore,
        clock: any EngineClock, configuration: Configuration = Configuration(),
        onDurable: (@Sendable ([StoredEvent]) -> Void)? = nil
    ) throws(StorageError) {
        self.id = id
        self.shard = shard
        self.epoch = epoch
        let auction = try stored.restore(id)
        self.auction = auction
        self.durableSeq = auction.seq
        self.lastSnapshotSeq = stored.snapshot?.seq ?? 0
        self.writer = writer
        self.store = store
        self.clock = clock
        self.configuration = configuration
        self.onDurable = onDurable
    }

    /// Arms the close timer from the loaded state. Call once after creating the actor.
    public func start() {
        armCloseTimer()
    }

    /// What the auction keeps of the bids it accepted (which receipts are whole, which fingerprints).
    public var ledger: BidLedger { auction.ledger }

    /// The public view of the auction as decided so far; nil when it does not exist.
    public var summary: AuctionSummary? { auction.summary }

    /// Whether nothing is pending: no decided-but-unwritten events, no caller waiting.
    public var isIdle: Bool { !flushing && pendingEvents.isEmpty && waiters.isEmpty && recovery == nil }

    /// Decides `command` and answers once the answer is durable.
    public func submit(_ command: AuctionCommand) async -> Result<CommandAccepted, EngineError> {
        if let failure = await readyToServe() { return .failure(failure) }
        var decision = auction.decide(command, now: clock.now())
        if case .lookUpInLog(let bidId) = decision {
            // A late retry of a bid whose receipt is kept only as a fingerprint (or another id
            // with the same fingerprint): the log says which.
            let found: BidReceipt?
            do {
                found = try await receiptInLog(bidId)
            } catch {
                return .failure(.storeUnavailable(error.description))
            }
            if let failure = await readyToServe() { return .failure(failure) }
            if let found { auction.restore(found) }
            decision = auction.decide(command, now: clock.now(), checkedLogFor: found == nil ? bidId : nil)
        }
        let outcome: Result<CommandAccepted, EngineError>
        switch decision {
        case .reject(let rejection):
            outcome = .failure(.rejected(rejection))
        case .alreadyAccepted(let receipt):
            outcome = .success(
                CommandAccepted(seq: auction.seq, receipt: receipt, summary: auction.summary!, replayed: true))
        case .alreadyCreated:
            outcome = .success(CommandAccepted(seq: auction.seq, receipt: nil, summary: auction.summary!, replayed: true))
        case .lookUpInLog:
            // The receipt was just restored; a second lookup cannot be asked for.
            return .failure(.storeUnavailable("internal: the bid ledger asked for the log twice"))
        case .accept(let events):
            do {
                try auction.apply(contentsOf: events)
            } catch {
                // Decided events always apply; if not, the rules are broken: stop deciding.
                failAll(with: .storeUnavailable("internal: \(error)"), mode: .needsRecovery)
                return .failure(.storeUnavailable("internal: \(error)"))
            }
            pendingEvents += events
            outcome = .success(
                CommandAccepted(
                    seq: auction.seq, receipt: command.bidId.flatMap { auction.ledger[$0] },
                    summary: auction.summary!, replayed: false))
            startFlushing()
        }
        guard auction.seq > durableSeq else { return outcome }
        return await withCheckedContinuation { continuation in
            waiters.append(Waiter(seq: auction.seq, outcome: outcome, continuation: continuation))
        }
    }

    /// The receipt of the accepted bid `bidId` as the durable log records it; nil when no bid of
    /// this auction had that id. Reads the log a page at a time — the rare path of a retry older
    /// than `BidLedger.retention`.
    private func receiptInLog(_ bidId: BidID) async throws(StorageError) -> BidReceipt? {
        var after: Int64 = 0
        while after < durableSeq {
            let page: [StoredEvent]
            do {
                page = try await store.events(of: id, after: after, limit: 1_000)
            } catch .compacted {
                // The lot was archived and its log compacted (a week after): a retry that late is
                // a new request, like an expired idempotency key.
                return nil
            }
            guard let last = page.last else { return nil }
            for stored in page where stored.event.acceptedBidId == bidId {
                return BidReceipt(accepting: stored.event, seq: stored.seq)
            }
            after = last.seq
        }
        return nil
    }

    /// Stops the actor if it is idle (passivation); returns whether it stopped. A stopped actor
    /// answers `stopped` to every command, so its owner can load a fresh one.
    public func stopIfIdle() -> Bool {
        guard isIdle, mode != .stopped else { return mode == .stopped }
        mode = .stopped
        cancelCloseTimer()
        return true
    }

    /// Stops the actor now (shard released or node shutting down); waiting callers get `stopped`.
    public func stop() {
        failAll(with: .stopped, mode: .stopped)
    }

    // MARK: - Serving state

    private func readyToServe() async -> EngineError? {
        switch mode {
        case .serving: return nil
        case .fenced: return .notOwner(shard)
        case .stopped: return .stopped
        case .needsRecovery:
            let task = recovery ?? Task { await self.reload() }
            recovery = task
            let failure = await task.value
            recovery = nil
            return failure ?? (mode == .serving ? nil : .storeUnavailable("recovering"))
        }
    }

    private func reload() async -> EngineError? {
        do {
            let stored = try await store.load(id)
            let restored = try stored.restore(id)
            guard mode == .needsRecovery else { return nil }
            auction = restored
            durableSeq = restored.seq
            lastSnapshotSeq = stored.snapshot?.seq ?? 0
            pendingEvents = []
            mode = .serving
            armCloseTimer()
            return nil
        } catch {
            return .storeUnavailable(error.description)
        }
    }

    private func failAll(with error: EngineError, mode newMode: Mode) {
        mode = newMode
        pendingEvents = []
        let failed = waiters
        waiters = []
        for waiter in failed { waiter.continuation.resume(returning: .failure(error)) }
        if newMode != .serving { cancelCloseTimer() }
    }

    // MARK: - Group commit

    private func startFlushing() {
        guard !flushing, !pendingEvents.isEmpty, mode == .serving else { return }
        flushing = true
        Task { await self.flush() }
    }

    private func flush() async {
        while mode == .serving, !pendingEvents.isEmpty {
            let events = pendingEvents
            pendingEvents = []
            let firstSeq = durableSeq + 1
            let lastSeq = auction.seq
            let interval = max(
                configuration.snapshotEvery, lastSeq / 4,
                min(Int64(auction.ledger.wholeReceiptCount), Self.receiptWaitLimit))
            let snapshot = lastSeq - lastSnapshotSeq >= interval ? auction : nil
            do {
                try await writer.append(
                    AppendEntry(
                        auction: id, shard: shard, epoch: epoch, firstSeq: firstSeq, events: events, snapshot: snapshot)
                )
            } catch {
                switch error {
                case .fenced: failAll(with: .notOwner(shard), mode: .fenced)
                default: failAll(with: .storeUnavailable(error.description), mode: .needsRecovery)
                }
                break
            }
            durableSeq = lastSeq
            if snapshot != nil { lastSnapshotSeq = lastSeq }
            let ready = waiters.prefix { $0.seq <= lastSeq }.count
            let answered = waiters.prefix(ready)
            waiters.removeFirst(ready)
            for waiter in answered { waiter.continuation.resume(returning: waiter.outcome) }
            if let onDurable {
                onDurable(
                    events.enumerated().map {
                        StoredEvent(auction: id, seq: firstSeq + Int64($0.offset), epoch: epoch, event: $0.element)
                    })
            }
            armCloseTimer()
        }
        flushing = false
    }

    // MARK: - Close timer

    private func armCloseTimer(retryAt: Timestamp? = nil) {
        guard mode == .serving, let state = auction.state, state.status == .running else {
            cancelCloseTimer()
            return
        }
        let deadline = retryAt ?? state.endsAt
        guard closeTimerDeadline != deadline || closeTimer == nil else { return }
        closeTimer?.cancel()
        closeTimerDeadline = deadline
        closeTimer = Task { [clock] in
            do {
                try await clock.sleep(until: deadline)
            } catch {
                return
            }
            await self.closeTimerFired()
        }
    }

    private func cancelCloseTimer() {
        closeTimer?.cancel()
        closeTimer = nil
        closeTimerDeadline = nil
    }

    private func closeTimerFired() async {
        closeTimer = nil
        closeTimerDeadline = nil
        switch await submit(.close) {
        case .failure(.storeUnavailable):
            armCloseTimer(retryAt: clock.now().advanced(by: configuration.closeRetryDelay))
        default:
            // Closed, or extended meanwhile (the timer follows the new end), or no longer ours.
            armCloseTimer()
        }
    }
}

extension AuctionCommand {
    /// The bid id a bid or purchase carries.
    var bidId: BidID? {
        switch self {
        case .placeBid(let bid): bid.bidId
        case .buyNow(let purchase): purchase.bidId
        case .create, .close, .cancel, .settle: nil
        }
    }
}
