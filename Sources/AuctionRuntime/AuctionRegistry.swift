public import AuctionCore
public import Logging
public import Metrics
public import Storage

/// The auctions a node serves: one `AuctionActor` per live auction, loaded on first use, on shards
/// whose lease this node holds.
///
/// Invariants: at most one actor per auction at a time (concurrent first uses share one load);
/// every actor of a shard writes under the epoch the registry acquired; once a shard is fenced or
/// released, its actors are stopped and forgotten, and the next use acquires a new epoch.
public actor AuctionRegistry {
    public struct Configuration: Sendable {
        public var node: NodeID
        public var shardMap: ShardMap
        public var actor: AuctionActor.Configuration

        public init(node: NodeID, shardMap: ShardMap = ShardMap(), actor: AuctionActor.Configuration = .init()) {
            self.node = node
            self.shardMap = shardMap
            self.actor = actor
        }
    }

    private let configuration: Configuration
    private let store: any EventStore
    private let writer: LogWriter
    private let clock: any EngineClock
    private let logger: Logger
    private let onDurable: (@Sendable ([StoredEvent]) -> Void)?

    private var actors: [AuctionID: AuctionActor] = [:]
    /// When each loaded actor last took a command (entries of actors gone are dropped by the next
    /// `passivateIdle`).
    private var lastUsed: [AuctionID: ContinuousClock.Instant] = [:]
    private var loading: [AuctionID: Task<Result<AuctionActor, EngineError>, Never>] = [:]
    /// The shard leases held here and their rules (pure; the seeded simulation runs the same type).
    private var leases = ShardLeases()
    /// Shard leases taken (`artpay_shard_acquisitions_total`) and appends refused because another
    /// node took the shard (`artpay_fenced_appends_total`).
    private let shardAcquisitions: Counter
    private let fencedAppends: Counter
    private var acquiring: [ShardID: Task<Result<Epoch, EngineError>, Never>] = [:]

    /// For registries built without a node's logger (benchmarks, tools, tests): notices and above,
    /// so a lease taken per shard does not print a line each.
    public static var quietLogger: Logger {
        var logger = Logger(label: "artpay.registry")
        logger.logLevel = .notice
        return logger
    }

    public init(
        configuration: Configuration, store: any EventStore, writer: LogWriter, clock: any EngineClock,
        logger: Logger = AuctionRegistry.quietLogger, onDurable: (@Sendable ([StoredEvent]) -> Void)? = nil,
        metrics: any MetricsFactory = NOOPMetricsHandler.instance
    ) {
        shardAcquisitions = Counter(label: "artpay_shard_acquisitions_total", factory: metrics)
        fencedAppends = Counter(label: "artpay_fenced_appends_total", factory: metrics)
        self.configuration = configuration
        self.store = store
        self.writer = writer
        self.clock = clock
        self.logger = logger
        self.onDurable = onDurable
    }

    /// Runs `command` on `auction`'s actor, loading it (and taking its shard) when needed.
    public func submit(_ command: AuctionCommand, to auction: AuctionID) async -> Result<CommandAccepted, EngineError> {
        // A stopped actor (passivated meanwhile) is replaced once; anything else is the answer.
        for _ in 0..<2 {
            let actor: AuctionActor
            switch await actorFor(auction) {
            case .success(let found): actor = found
            case .failure(let error): return .failure(error)
            }
            lastUsed[auction] = .now
            let result = await actor.submit(command)
            switch result {
            case .failure(.stopped):
                if actors[auction] === actor { actors[auction] = nil }
                continue
            case .failure(.notOwner(let shard)):
                shardLost(shard, epoch: actor.epoch)
                return result
            case .failure(.rejected(.auctionNotFound)):
                // Do not keep actors for ids that name nothing.
                if await actor.stopIfIdle(), actors[auction] === actor { actors[auction] = nil }
                return result
            default:
                return result
            }
        }
        return .failure(.stopped)
    }

    /// The shards this node holds a lease on, with their epochs.
    public var ownedShards: [ShardID: Epoch] { leases.held }

    /// The actor of `auction` if it is loaded here; nil otherwise (nothing is loaded by asking).
    public func loadedActor(_ auction: AuctionID) -> AuctionActor? { actors[auction] }

    /// How many auctions have an actor here.
    public var activeAuctionCount: Int { actors.count }

    /// Lets go of every shard another node has written under a newer epoch than the lease held here.
    ///
    /// Why: a node that was paused or cut off while others took its shards may find, once back, that
    /// its view of the cluster never changed — it never released them, and its actors still hold the
    /// state they had. Fencing stops its next append, but a command that appends nothing (a
    /// rejection, a replay, a settlement step refused for a payment "still in flight") would be
    /// answered from that stale state for ever. Seeing the newer epoch in the log is proof enough.
    public func noticeEpochs(_ seen: [(AuctionID, Epoch)]) async {
        let shardMap = configuration.shardMap
        for shard in leases.overtaken(by: seen.lazy.map { (shardMap.shard(of: $0.0), $0.1) }) {
            logger.notice(
                "another node wrote this shard under a newer epoch: releasing it",
                metadata: ["shard": "\(shard)", "held": "\(leases.epoch(of: shard).map { "\($0)" } ?? "-")"])
            await release(shard)
        }
    }

    /// Another node took `shard` from under `epoch` (a fenced write outside an auction): releases
    /// it if that is still the lease held here.
    public func leaseLost(_ shard: ShardID, epoch: Epoch) async {
        guard leases.mayServe(shard, under: epoch) else { return }
        logger.warning("fenced: another node took the shard", metadata: ["shard": "\(shard)", "epoch": "\(epoch)"])
        await release(shard)
    }

    /// Stops the actors of `shard` and forgets its lease (the shard moves to another node).
    public func release(_ shard: ShardID) async {
        if let epoch = leases.release(shard) {
            logger.info("released shard", metadata: ["shard": "\(shard)", "epoch": "\(epoch)"])
        }
        for (id, actor) in actors where actor.shard == shard {
            actors[id] = nil
            await actor.stop()
        }
    }

    /// Stops the actors nobody used for `unusedFor`, so that what a node keeps in memory is the
    /// auctions in use, not every auction it ever served: those of auctions that are over (closed,
    /// cancelled) or do not exist, and — given `runningEndingAfter` — running ones that end after
    /// it. A running auction closer to its end keeps its actor, which holds the close timer; the
    /// owner loads the others again before they end (`ClusterNode` does, a minute ahead). An actor
    /// with work in flight is never stopped. Returns how many stopped.
    public func passivateIdle(unusedFor idle: Duration = .zero, runningEndingAfter horizon: Timestamp? = nil) async
        -> Int
    {
        let usedSince = ContinuousClock.now - idle
        var stopped = 0
        for (id, actor) in actors where lastUsed[id].map({ $0 <= usedSince }) ?? true {
            let passivate: Bool
            switch await actor.summary {
            case nil: passivate = true
            case let summary?:
                switch summary.status {
                case .closed, .cancelled: passivate = true
                case .running: passivate = horizon.map { summary.endsAt > $0 } ?? false
                }
            }
            if passivate, await actor.stopIfIdle(), actors[id] === actor {
                actors[id] = nil
                lastUsed[id] = nil
                stopped += 1
            }
        }
        lastUsed = lastUsed.filter { actors[$0.key] != nil }
        return stopped
    }

    /// Stops every actor; waiting callers get `stopped`.
    public func shutdown() async {
        let all = actors.values
        actors = [:]
        leases.releaseAll()
        for actor in all { await actor.stop() }
    }

    // MARK: - Loading

    private func actorFor(_ auction: AuctionID) async -> Result<AuctionActor, EngineError> {
        if let actor = actors[auction] { return .success(actor) }
        let task = loading[auction] ?? Task { await self.load(auction) }
        loading[auction] = task
        let result = await task.value
        loading[auction] = nil
        if case .success(let actor) = result, actors[auction] == nil {
            // Loaded under a lease that was lost while its log was read (another auction of the
            // shard was fenced meanwhile): installed, it would answer from a stale state and every
            // append of it would be fenced again, for ever — a wedged auction. The caller gets
            // `notOwner`; the next command takes the shard afresh.
            guard leases.mayServe(actor.shard, under: actor.epoch) else {
                await actor.stop()
                return .failure(.notOwner(actor.shard))
            }
            actors[auction] = actor
        }
        return actors[auction].map { .success($0) } ?? result
    }

    private func load(_ auction: AuctionID) async -> Result<AuctionActor, EngineError> {
        let shard = configuration.shardMap.shard(of: auction)
        let epoch: Epoch
        switch await lease(shard) {
        case .success(let held): epoch = held
        case .failure(let error): return .failure(error)
        }
        do {
            let stored = try await store.load(auction)
            let actor = try AuctionActor(
                id: auction, shard: shard, epoch: epoch, stored: stored, writer: writer, store: store, clock: clock,
                configuration: configuration.actor, onDurable: onDurable)
            await actor.start()
            return .success(actor)
        } catch {
            logger.error("cannot load auction", metadata: ["auction": "\(auction)", "error": "\(error)"])
            return .failure(EngineError(error, shard: shard))
        }
    }

    /// The epoch of this node's lease on `shard`, taken now if it holds none: for work placed by
    /// shard besides auctions (webhook deliveries), fenced by the same epoch.
    public func leaseEpoch(of shard: ShardID) async -> Result<Epoch, EngineError> {
        await lease(shard)
    }

    private func lease(_ shard: ShardID) async -> Result<Epoch, EngineError> {
        if let epoch = leases.epoch(of: shard) { return .success(epoch) }
        let task =
            acquiring[shard]
            ?? Task { [store, node = configuration.node] () -> Result<Epoch, EngineError> in
                do throws(StorageError) {
                    return .success(try await store.acquire(shard: shard, node: node).epoch)
                } catch {
                    return .failure(EngineError(error, shard: shard))
                }
            }
        acquiring[shard] = task
        let result = await task.value
        acquiring[shard] = nil
        guard case .success(let epoch) = result else { return leases.epoch(of: shard).map { .success($0) } ?? result }
        let lease = leases.acquired(shard, epoch: epoch)
        if lease.isNew {
            shardAcquisitions.increment()
            logger.info("acquired shard", metadata: ["shard": "\(shard)", "epoch": "\(epoch)"])
        }
        return .success(lease.epoch)
    }

    private func shardLost(_ shard: ShardID, epoch: Epoch) {
        fencedAppends.increment()
        // Actors under the lost epoch go whether or not it is still the lease held here.
        for (id, actor) in actors where actor.shard == shard && actor.epoch == epoch {
            actors[id] = nil
        }
        guard leases.fenced(shard, under: epoch) else { return }
        logger.warning("fenced: another node took the shard", metadata: ["shard": "\(shard)", "epoch": "\(epoch)"])
    }
}
