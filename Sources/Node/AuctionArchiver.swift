import AuctionCore
public import AuctionRuntime
public import Logging
public import Storage

/// Writes the record of each finished lot this node owns to the archive: closed unsold, cancelled
/// (once the end it was planned for has passed), or sold with its settlement finished (settled,
/// refunded, unsold, cancelled). A lot whose log
/// grows after that (a refund) is archived again, replacing the shorter record. On every node, it
/// then lets the read model forget the archived lots past its retention
/// (`AuctionReadModel.evictArchived`).
///
/// Why it is safe anywhere: the record is a pure fold of the lot's durable log
/// (`AuctionRecord.finished`), so two nodes that both archive a lot during a failover write the
/// same document, and the store keeps the one of the longer log.
public actor AuctionArchiver {
    public struct Settings: Sendable {
        /// How often the read model is looked at for finished lots.
        public var interval: Duration = .seconds(5)
        /// Lots archived per pass at most (a node starting on a large backlog spreads it out).
        public var batch = 200
        /// How long after a lot was archived its live log is compacted to its last snapshot and
        /// event (the archive keeps the history; the feed's horizon moves past the events that
        /// go); nil: never. A week, like the read model's retention: the feed keeps a week.
        public var compactAfter: Duration? = .seconds(7 * 86_400)

        public init() {}
    }

    private let node: ClusterNode
    private let store: any EventStore & ArchiveStore
    private let users: any UserStore
    private let clock: any EngineClock
    private let logger: Logger
    private let settings: Settings
    /// The seq each lot was archived at, as far as this node knows.
    private var archived: [AuctionID: Int64] = [:]

    public init(
        node: ClusterNode, store: any EventStore & ArchiveStore, users: any UserStore, clock: any EngineClock,
        logger: Logger, settings: Settings = .init()
    ) {
        self.node = node
        self.store = store
        self.users = users
        self.clock = clock
        self.logger = logger
        self.settings = settings
    }

    /// Archives until the task is cancelled.
    public func run() async {
        while !Task.isCancelled {
            _ = await archiveFinished()
            _ = await compactArchived()
            _ = await node.readModel.evictArchived(now: clock.now())
            try? await Task.sleep(for: settings.interval)
        }
    }

    /// One pass: the finished lots this node owns whose archived record is missing or shorter
    /// than their log; how many were archived.
    public func archiveFinished() async -> Int {
        // Only lots whose end has passed are walked (by end, from the oldest the read model still
        // keeps): the cost follows the lots over within the retention, not every lot in the cluster.
        let snapshot = node.readModel.snapshot
        let finished = snapshot.finished(endedBefore: clock.now()).compactMap(snapshot.summary(of:))
            .filter { summary in archived[summary.auctionId].map { $0 < summary.seq } ?? true }
        var due: [AuctionSummary] = []
        for summary in finished where await node.owns(summary.auctionId) { due.append(summary) }
        // What this node does not know yet, it asks the archive once.
        let unknown = due.filter { archived[$0.auctionId] == nil }.map(\.auctionId)
        if !unknown.isEmpty, let marks = try? await store.archivedMarks(of: unknown) {
            archived.merge(marks.mapValues(\.seq)) { max($0, $1) }
        }
        var count = 0
        for summary in due where archived[summary.auctionId].map({ $0 < summary.seq }) ?? true {
            guard count < settings.batch, !Task.isCancelled else { break }
            if await archive(summary) { count += 1 }
        }
        return count
    }

    /// One pass of compaction: the live logs of lots this node owns that were archived longer
    /// than `compactAfter` ago; how many were compacted. A lot whose log grew since its record was
    /// written is archived again first (by `archiveFinished`), one a webhook endpoint has yet to
    /// be handed waits for it.
    public func compactArchived() async -> Int {
        guard let compactAfter = settings.compactAfter,
            let candidates = try? await store.compactionCandidates(
                archivedBefore: clock.now().advanced(by: .zero - compactAfter), limit: settings.batch * 5)
        else { return 0 }
        var count = 0
        for id in candidates where await node.owns(id) {
            guard count < settings.batch, !Task.isCancelled else { break }
            do {
                let live = try await store.load(id).restore(id)
                if case .compacted = try await store.compact(id, keeping: live) { count += 1 }
            } catch {
                logger.warning("cannot compact a lot's log", metadata: ["auction": "\(id)", "error": "\(error)"])
            }
        }
        return count
    }

    private func archive(_ summary: AuctionSummary) async -> Bool {
        let id = summary.auctionId
        do {
            let found: AuctionRecord?
            do {
                let log = try await store.events(of: id, after: 0, limit: Int.max)
                let scope = PaddleScope.key(sale: summary.saleId, auction: id)
                let paddles = (try? await users.paddles(in: [scope]))?[scope] ?? [:]
                found = AuctionRecord.finished(id, events: log.map(\.event), paddles: paddles)
            } catch .compacted {
                // The history is in the archive, the rest in the live lot.
                found = try await store.archivedAuction(id)?.continued(to: store.load(id).restore(id))
            }
            guard let record = found else { return false }
            _ = try await store.archive(record, at: clock.now())
            archived[id] = record.seq
            return true
        } catch {
            logger.warning("cannot archive a lot", metadata: ["auction": "\(id)", "error": "\(error)"])
            return false
        }
    }
}
