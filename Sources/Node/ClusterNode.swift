public import AuctionCore
public import AuctionRuntime
public import ClusterCore
import Foundation
public import Logging
public import Metrics
public import Prometheus
public import Storage
import Synchronization

/// One node of the cluster: drives its membership instance, keeps the placement view, and routes
/// every command to the auction's owner — the local `AuctionRegistry` or, one TCP hop away,
/// another node.
///
/// Invariants: a command is executed only by a node whose own view makes it the owner (the store's
/// fencing then decides whether it may write); a forwarded command keeps its bid id, so retries
/// after a failover never double a bid; at most two forwarding hops, then `ownerUnavailable`.
public actor ClusterNode {
    public struct Configuration: Sendable {
        public var id: NodeID
        /// The cluster address other nodes reach this one at.
        public var address: NodeAddress
        public var roles: Set<NodeRole>
        public var seeds: [NodeAddress]
        public var membership: MembershipSettings
        public var shardMap: ShardMap
        /// How long a forwarded command may take before it fails as `ownerUnavailable`.
        public var forwardTimeout: Duration
        /// How long `submit` keeps retrying a command whose owner is failing over.
        public var retryBudget: Duration
        /// After another node took one of this node's shards (a fenced append), how long this node
        /// waits for its view to change before it takes the shard back — see `route`.
        public var fencedHoldOff: Duration

        public init(
            id: NodeID, address: NodeAddress, roles: Set<NodeRole> = Set(NodeRole.allCases), seeds: [NodeAddress],
            membership: MembershipSettings = .init(), shardMap: ShardMap = ShardMap(),
            forwardTimeout: Duration = .seconds(2), retryBudget: Duration = .seconds(3),
            fencedHoldOff: Duration = .seconds(2)
        ) {
            self.id = id
            self.address = address
            self.roles = roles
            self.seeds = seeds
            self.membership = membership
            self.shardMap = shardMap
            self.forwardTimeout = forwardTimeout
            self.retryBudget = retryBudget
            self.fencedHoldOff = fencedHoldOff
        }
    }

    private struct PendingForward {
        var to: NodeAddress
        var continuation: CheckedContinuation<Result<CommandAccepted, EngineError>, Never>
        /// Answers `ownerUnavailable` when the owner is silent too long; cancelled by the answer.
        var timeout: Task<Void, Never>?
    }

    public let configuration: Configuration
    private var membership: MembershipInstance
    private let registry: AuctionRegistry
    private let writer: LogWriter
    private let transport: ClusterTransport
    private let store: any EventStore
    private let fanOut: EventFanOut
    /// Every auction of the cluster, kept current from the fan-out.
    public nonisolated let readModel: AuctionReadModel
    private let userChangeListeners = Mutex<[@Sendable (UserID) -> Void]>([])
    private let forwardedCommandCheck = Mutex<ForwardedCommandCheck?>(nil)
    private let liveGatewayCount = Mutex(1)
    private let addressesSeen = Mutex<[NodeID: NodeAddress]>([:])
    /// The process's Prometheus registry (one per process: the gateway's series go in it too).
    public nonisolated let metricsRegistry: PrometheusCollectorRegistry
    private nonisolated let metricExport: MetricExport
    /// Where what the node counts or times as it happens goes (swift-metrics): the registry's
    /// factory, or a test's `TestMetrics`.
    public nonisolated let metricsFactory: any MetricsFactory
    private nonisolated let eventMetrics: NodeEventMetrics
    /// `routing.candidates`, readable off the actor: who may push an auction's events is checked on the
    /// connection's read loop.
    private let placementView = Mutex<[NodeID]>([])
    /// Pushed events dropped because their sender does not own their shard in this node's view.
    private let eventsNotFromOwner = Atomic<Int>(0)
    /// Commands other nodes forwarded here that the check refused: their issuer may not run them.
    private let forwardedCommandsRefused = Atomic<Int>(0)
    /// What this node's settlement driver last published, for `/v1/cluster` and `/metrics`.
    let paymentsStatus = Mutex<SettlementDriver.Counters?>(nil)
    /// Local consumers of auctions' events (SSE and WebSocket clients on this node). Not actor
    /// state: pushed events reach them in arrival order without waiting behind forwarded commands.
    private let feeds = Mutex<[AuctionID: [ObjectIdentifier: EventFeed]]>([:])
    /// When the periodic work falls due (pure; on `sinceStart`'s clock).
    private var chores = NodeChores()
    /// The loop's timer, rung when an input moves the membership's deadline before `sleepingUntil`.
    private let doorbell = Doorbell()
    private var sleepingUntil: Timestamp?
    private let clock: any EngineClock
    private let logger: Logger
    /// Where commands run and which leases go on a view change (pure; the simulation runs it too).
    private var routing: ShardRouting
    /// The origin of the monotonic clock `routing` is given.
    private let startedAt = ContinuousClock.now
    private var sinceStart: Duration { ContinuousClock.now - startedAt }
    /// Every task the node starts on the side, cancelled when it stops (`run` ends or `leave`).
    private let background = BackgroundWork()
    private var pending: [UInt64: PendingForward] = [:]
    private var nextRequest: UInt64 = 0
    /// When each command now running on this node as owner started: the watchdog's view.
    private var running: [UInt64: ContinuousClock.Instant] = [:]
    private var nextRunning: UInt64 = 0
    public private(set) var counters = Counters()

    /// What the node did, for `/metrics` and `/v1/cluster`.
    public struct Counters: Sendable, Codable {
        public var forwardedCommands = 0
        public var forwardFailures = 0
        public var forwardMillisecondsTotal: Int64 = 0
        public var suspicions = 0
        public var refutations = 0
        public var deaths = 0
        public var shardsReleased = 0
        /// Commands this node ran as owner that answered only after `forwardTimeout`: the node
        /// that forwarded them had given up (the watchdog's count).
        public var overdueCommands = 0
        /// Frames a peer sent on behalf of another node (a membership message with another sender,
        /// a subscription for another subscriber): dropped. Non-zero means a bug or a compromised
        /// node.
        public var framesNotFromTheirSender = 0
    }

    /// Builds the node with its own auction registry and event fan-out, wired here once: every
    /// durable batch the registry writes reaches the fan-out this node serves subscriptions and its
    /// read model from, and registry and node place auctions with the same shard map.
    /// - Parameters:
    ///   - store: the shared store: the log the registry writes, where event subscribers close gaps.
    ///   - actor: settings of the auction actors (group commit, close retries).
    public init(
        configuration: Configuration, store: any EventStore, transport: ClusterTransport, clock: any EngineClock,
        logger: Logger, actor: AuctionActor.Configuration = .init(),
        metricsRegistry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        metricsFactory: (any MetricsFactory)? = nil
    ) {
        let fanOut = EventFanOut()
        let metricsFactory = metricsFactory ?? RegistryMetricsFactory(registry: metricsRegistry)
        self.metricsRegistry = metricsRegistry
        self.metricExport = MetricExport(registry: metricsRegistry)
        self.metricsFactory = metricsFactory
        self.eventMetrics = NodeEventMetrics(factory: metricsFactory)
        self.configuration = configuration
        self.writer = LogWriter(store: store, metrics: metricsFactory)
        self.registry = AuctionRegistry(
            configuration: .init(node: configuration.id, shardMap: configuration.shardMap, actor: actor), store: store,
            writer: writer, clock: clock, logger: logger, onDurable: fanOut.publish, metrics: metricsFactory)
        self.transport = transport
        self.store = store
        self.fanOut = fanOut
        self.addressesSeen.withLock { $0[configuration.id] = configuration.address }
        self.readModel = AuctionReadModel(
            store: store, notifyFrom: clock.now(), clock: clock, metrics: metricsFactory,
            archive: store as? any ArchiveStore)
        self.clock = clock
        self.logger = logger
        let now = clock.now()
        let myself = Member(
            id: configuration.id, generation: UInt64(max(1, now.millisecondsSinceEpoch)),
            address: configuration.address,
            roles: configuration.roles)
        membership = MembershipInstance(
            myself: myself, seeds: configuration.seeds, settings: configuration.membership, now: now,
            seed: UInt64.random(in: 0...UInt64.max))
        routing = ShardRouting(
            me: configuration.id, candidates: Placement.candidates([myself]), fencedHoldOff: configuration.fencedHoldOff
        )
        placementView.withLock { [routing] in $0 = routing.candidates }
    }

    /// Runs the membership protocol until the task is cancelled. Frames from the transport are
    /// handled from the moment this starts.
    public func run() async {
        transport.onFrame { [weak self] frame, peer, reply in
            guard let self else { return }
            if case .events(let auction, let events) = frame {
                self.receive(events, of: auction, pushedBy: peer)
            } else if case .request(let id, _, let auction, let command, let issuer, _) = frame,
                let refusal = await self.refusal(of: command, for: issuer, on: auction, from: peer)
            {
                reply(.response(id: id, result: .failure(refusal)))
            } else {
                await self.handle(frame, from: peer, reply: reply)
            }
        }
        subscribeLocally()
        // A log written under a newer epoch than this node's lease: the shard was taken meanwhile.
        await readModel.onNewerEpochs { [registry, background] seen in
            background.spawn { await registry.noticeEpochs(seen) }
        }
        let readModel = readModel
        background.spawn { await readModel.catchUp() }
        while !Task.isCancelled {
            let now = clock.now()
            perform(membership.tick(now: now))
            run(chores.due(at: sinceStart))
            // Sleep until the membership's next deadline or the next chore, whichever is first; an
            // input that moves the membership's deadline earlier rings the doorbell (`perform`).
            let deadline = membership.nextDeadline
            let wait = min(now.duration(to: deadline), chores.nextDeadline - sinceStart)
            sleepingUntil = deadline
            await doorbell.wait(upTo: max(wait, Duration.milliseconds(2)))
            sleepingUntil = nil
        }
        background.cancelAll()
    }

    /// Leaves the cluster: tells the other members, and stops the local auctions.
    public func leave() async {
        perform(membership.leave(now: clock.now()))
        background.cancelAll()
        await registry.shutdown()
    }

    // MARK: - Commands

    /// Runs `command` on `auction`'s owner, wherever it is, retrying while the owner fails over.
    /// `issuer` says whom it is run for: the owner, when it is another node, checks it again
    /// (`checkForwardedCommands`). The API passes the caller; the node's own work is `.node`.
    public func submit(
        _ command: AuctionCommand, to auction: AuctionID, as issuer: CommandIssuer = .node
    ) async -> Result<CommandAccepted, EngineError> {
        let deadline = clock.now().advanced(by: configuration.retryBudget)
        var delay = Duration.milliseconds(25)
        while true {
            let result = await route(command, to: auction, hops: 0, issuer: issuer)
            switch result {
            case .failure(.notOwner), .failure(.ownerUnavailable), .failure(.stopped), .failure(.storeUnavailable):
                guard clock.now().advanced(by: delay) < deadline else { return result }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .milliseconds(200))
            default:
                return result
            }
        }
    }

    /// The shard of `key` and this node's lease epoch on it, when this node owns the shard in its
    /// view (and reaches a majority); the lease is taken if need be. What a deliverer of work placed
    /// like auctions (a webhook endpoint) checks before each step, and fences its writes with.
    /// A shard another node took meanwhile is not taken back before `fencedHoldOff` (see `route`).
    public func lease(forKey key: String) async -> (shard: ShardID, epoch: Epoch)? {
        let shard = configuration.shardMap.shard(ofKey: key)
        guard case .runHere = routing.route(shard, hops: 0, holdsShards: membership.holdsShards, now: sinceStart),
            case .success(let epoch) = await registry.leaseEpoch(of: shard),
            // The view may have moved while the lease was taken.
            routing.owns(shard, holdsShards: membership.holdsShards)
        else { return nil }
        return (shard, epoch)
    }

    /// A write fenced under `epoch` of `shard` outside an auction (a webhook cursor): another node
    /// holds the shard now. The lease goes, with the shard's actors, and is not taken back before
    /// `fencedHoldOff` while the view stays the same.
    public func shardTaken(_ shard: ShardID, epoch: Epoch) async {
        routing.fenced(shard, now: sinceStart)
        await registry.leaseLost(shard, epoch: epoch)
    }

    /// Whether this node owns `auction` now: its shard is placed here and the node reaches a
    /// majority. What background work for an auction (closing it, settling it) runs on.
    public func owns(_ auction: AuctionID) -> Bool {
        routing.owns(configuration.shardMap.shard(of: auction), holdsShards: membership.holdsShards)
    }

    /// Checks the commands that other nodes forward here: who they are run for may do them.
    /// Installed by the gateway (which knows users and roles); without one, forwarded commands are
    /// run as they come (a node without an API, in tests).
    public nonisolated func checkForwardedCommands(
        with check: @escaping @Sendable (CommandIssuer, AuctionCommand) async -> EngineError?
    ) {
        forwardedCommandCheck.withLock { $0 = ForwardedCommandCheck(run: check) }
    }

    /// Why a command another node forwarded here must not run, if it must not: checked off the
    /// actor, on the frame's own task — a check that suspends inside the actor made every forwarded
    /// bid queue for the actor twice more, and cut bids through a non-owner to a fifth.
    private nonisolated func refusal(
        of command: AuctionCommand, for issuer: CommandIssuer, on auction: AuctionID, from peer: NodeID
    ) async -> EngineError? {
        guard let check = forwardedCommandCheck.withLock({ $0 }), let refusal = await check.run(issuer, command) else {
            return nil
        }
        forwardedCommandsRefused.add(1, ordering: .relaxed)
        logger.notice(
            "refused a forwarded command its issuer may not run",
            metadata: ["peer": "\(peer)", "auction": "\(auction)", "issuer": "\(issuer)", "code": "\(refusal.code)"])
        return refusal
    }

    private func route(
        _ command: AuctionCommand, to auction: AuctionID, hops: UInt8, issuer: CommandIssuer
    ) async -> Result<CommandAccepted, EngineError> {
        let shard = configuration.shardMap.shard(of: auction)
        switch routing.route(shard, hops: hops, holdsShards: membership.holdsShards, now: sinceStart) {
        case .refuse(let refusal):
            return .failure(.ownerUnavailable(refusal.description))
        case .runHere:
            let result = await runHere(command, on: auction)
            if case .failure(.notOwner) = result { routing.fenced(shard, now: sinceStart) }
            return result
        case .forward(let owner):
            guard let address = membership.member(owner)?.address else {
                return .failure(.ownerUnavailable("unknown owner"))
            }
            return await forward(command, to: auction, hops: hops + 1, issuer: issuer, at: address)
        }
    }

    /// Runs `command` on the local actor, watched: a command still running after `forwardTimeout`
    /// is overdue (whoever forwarded it answered `ownerUnavailable` already) — a wedged auction or
    /// store shows here before any client complains.
    private func runHere(_ command: AuctionCommand, on auction: AuctionID) async -> Result<
        CommandAccepted, EngineError
    > {
        nextRunning += 1
        let token = nextRunning
        let started = ContinuousClock.now
        running[token] = started
        let result = await registry.submit(command, to: auction)
        running[token] = nil
        if ContinuousClock.now - started > configuration.forwardTimeout { counters.overdueCommands += 1 }
        return result
    }

    private func forward(
        _ command: AuctionCommand, to auction: AuctionID, hops: UInt8, issuer: CommandIssuer, at address: NodeAddress
    ) async -> Result<CommandAccepted, EngineError> {
        nextRequest += 1
        let id = nextRequest
        let started = ContinuousClock.now
        counters.forwardedCommands += 1
        eventMetrics.forwarded.increment()
        let timeout = configuration.forwardTimeout
        let result = await withCheckedContinuation { continuation in
            pending[id] = PendingForward(to: address, continuation: continuation)
            transport.send(
                .request(
                    id: id, hops: hops, auction: auction, command: command, issuer: issuer, requestId: RequestTrace.id),
                to: address)
            logger.debug(
                "forwarded a command",
                metadata: ["request": "\(RequestTrace.id ?? "-")", "auction": "\(auction)", "to": "\(address)"])
            pending[id]?.timeout = Task { [weak self] in
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                await self?.fail(id, .ownerUnavailable("no answer from \(address) in time"))
            }
        }
        let duration = ContinuousClock.now - started
        let elapsed = duration.components
        counters.forwardMillisecondsTotal += elapsed.seconds * 1_000 + elapsed.attoseconds / 1_000_000_000_000_000
        eventMetrics.duration.record(duration: duration)
        if case .failure = result {
            counters.forwardFailures += 1
            eventMetrics.failures.increment()
        }
        return result
    }

    private func fail(_ id: UInt64, _ error: EngineError) {
        answer(id, .failure(error))
    }

    private func answer(_ id: UInt64, _ result: Result<CommandAccepted, EngineError>) {
        guard let forward = pending.removeValue(forKey: id) else { return }
        forward.timeout?.cancel()
        forward.continuation.resume(returning: result)
    }

    // MARK: - Frames

    /// A peer speaks only for itself: a membership message about another sender, or a subscription
    /// for another subscriber, is dropped and counted (mutual TLS proved who `peer` is).
    private func handle(_ frame: ClusterFrame, from peer: NodeID, reply: @escaping @Sendable (ClusterFrame) -> Void)
        async
    {
        switch frame {
        case .membership(let message):
            guard message.sender.id == peer else {
                counters.framesNotFromTheirSender += 1
                logger.warning(
                    "dropped a membership message sent for another node",
                    metadata: ["peer": "\(peer)", "sender": "\(message.sender.id)"])
                return
            }
            perform(membership.receive(message, from: message.sender.address, now: clock.now()))
        case .request(let id, let hops, let auction, let command, let issuer, let requestId):
            // Checked before it reaches the actor (`refusal(of:for:on:from:)`).
            let result = await RequestTrace.$id.withValue(requestId) {
                let result = await route(command, to: auction, hops: hops, issuer: issuer)
                logger.debug(
                    "ran a forwarded command",
                    metadata: [
                        "request": "\(requestId ?? "-")", "from": "\(peer)", "auction": "\(auction)",
                        "result": "\(result.failureCode)",
                    ])
                return result
            }
            reply(.response(id: id, result: result))
        case .response(let id, let result):
            answer(id, result)
        case .events(let auction, let events):
            receive(events, of: auction, pushedBy: peer)
        case .subscribeToEverything(let subscriber):
            guard subscriber == peer else {
                counters.framesNotFromTheirSender += 1
                return
            }
            fanOut.subscribeToEverything(subscriber: subscriber.rawValue) { events in
                guard let auction = events.first?.auction else { return }
                reply(.events(auction: auction, events: events))
            }
        case .userChanged(let user):
            for listener in userChangeListeners.withLock({ $0 }) { listener(user) }
        }
    }

    /// Live members that serve HTTP, as this node sees them (at least 1): the share of a
    /// cluster-wide rate limit each node enforces.
    public nonisolated var liveGateways: Int { liveGatewayCount.withLock { $0 } }

    /// The cluster address of every member this node has seen since it started, dead ones too
    /// (a browser page served by a node that died goes on through the others).
    public nonisolated var memberAddressesSeen: [NodeID: NodeAddress] { addressesSeen.withLock { $0 } }

    // MARK: - Users

    /// Hears about users whose standing changed on this node or another (the gateway's cache of
    /// user standings).
    public nonisolated func onUserChange(_ listener: @escaping @Sendable (UserID) -> Void) {
        userChangeListeners.withLock { $0.append(listener) }
    }

    /// Tells this node's listeners and every live member that `user`'s standing (roles, token
    /// version, block from bidding) changed. Best effort: a member that misses it sees the change
    /// when its cached entry expires.
    public func announceUserChange(_ user: UserID) {
        for listener in userChangeListeners.withLock({ $0 }) { listener(user) }
        for member in membership.members where member.id != configuration.id && member.status.isLive {
            transport.send(.userChanged(user), to: member.address)
        }
    }

    // MARK: - Event subscriptions

    /// Every durable event of `auction` after `seq`, in order, exactly once, from whichever node
    /// owns the auction now or later (gaps after a failover are read from the store). The stream
    /// ends when the consumer stops iterating.
    public nonisolated func events(of auction: AuctionID, after seq: Int64) -> AsyncStream<StoredEvent> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: StoredEvent.self, bufferingPolicy: .bufferingNewest(10_000))
        let feed = EventFeed(auction: auction, after: seq, store: store, output: continuation)
        feeds.withLock { $0[auction, default: [:]][ObjectIdentifier(feed)] = feed }
        continuation.onTermination = { [weak self] _ in
            feed.cancel()
            self?.removeFeed(feed)
        }
        return stream
    }

    private nonisolated func removeFeed(_ feed: EventFeed) {
        feeds.withLock { feeds in
            feeds[feed.auction]?[ObjectIdentifier(feed)] = nil
            if feeds[feed.auction]?.isEmpty == true { feeds[feed.auction] = nil }
        }
    }

    /// Durable events of one auction, pushed by its owner (this node or another, through the
    /// subscription to everything each node keeps with every live member): to the read model
    /// and to this node's feeds of that auction, in the order they came.
    /// Takes events another node pushed only from the owner of their shard as this node sees the
    /// cluster: a peer that does not own an auction cannot feed read models and watchers events it
    /// made up. Dropped pushes cost nothing but time — an owner's durable events are read from the
    /// store by the read model's catch-up and the feeds' gap checks (both every 2 s), as after any
    /// lost push, while views of the cluster disagree during a failover.
    private nonisolated func receive(_ events: [StoredEvent], of auction: AuctionID, pushedBy peer: NodeID) {
        let shard = configuration.shardMap.shard(of: auction)
        guard placementView.withLock({ Placement.owner(of: shard, among: $0) }) == peer else {
            eventsNotFromOwner.add(1, ordering: .relaxed)
            return
        }
        receive(events)
    }

    private nonisolated func receive(_ events: [StoredEvent]) {
        guard let auction = events.first?.auction else { return }
        for feed in feeds.withLock({ $0[auction].map { Array($0.values) } ?? [] }) { feed.offer(events) }
        readModel.offer(events)
    }

    /// What this node writes reaches its own read model and feeds like another node's pushes do.
    private func subscribeLocally() {
        fanOut.subscribeToEverything(subscriber: "local") { [weak self] events in self?.receive(events) }
    }

    /// Does the chores `NodeChores` found due.
    private func run(_ due: [NodeChores.Chore]) {
        for chore in due {
            switch chore {
            case .renewSubscriptions: renewSubscriptions()
            case .catchUpReadModel:
                let readModel = readModel
                background.spawn { await readModel.catchUp() }
            case .closeDueAuctions: closeDueAuctions()
            case .passivateIdleAuctions: passivateIdleAuctions()
            }
        }
    }

    /// Renews, with every live member, the subscription to everything it writes (read model and
    /// live feeds), and lets every feed look in the store for anything a push missed.
    private func renewSubscriptions() {
        subscribeLocally()
        for member in membership.members where member.id != configuration.id && member.status.isLive {
            transport.send(.subscribeToEverything(subscriber: configuration.id), to: member.address)
        }
        for feed in feeds.withLock({ $0.values.flatMap(\.values) }) { feed.poll() }
    }

    /// Stops the actors of auctions nobody used for a minute — over, or ending in more than two
    /// minutes (`closeDueAuctions` loads those again a minute before their end) — so memory
    /// follows the auctions in use, not every auction the node ever served.
    private func passivateIdleAuctions() {
        let (registry, horizon) = (registry, clock.now().advanced(by: .seconds(120)))
        background.spawn { _ = await registry.passivateIdle(unusedFor: .seconds(60), runningEndingAfter: horizon) }
    }

    /// Close timers live in loaded auction actors; an auction nobody touched since a restart or a
    /// failover has none. So the owner loads its running auctions that end within a minute (their
    /// actor arms the timer), and sends a close through the registry for those past their end
    /// that still run: a loaded actor that was fenced meanwhile (its timer's close failed) is then
    /// dropped with its lease, and the next round closes it under a new one.
    private func closeDueAuctions() {
        guard membership.holdsShards else { return }
        let now = clock.now()
        let horizon = now.advanced(by: .seconds(60))
        let (readModel, registry, shardMap, routing) = (readModel, registry, configuration.shardMap, routing)
        background.spawn {
            let due = readModel.running(endingBy: horizon, limit: 1_000)
            for summary in due where routing.owns(shardMap.shard(of: summary.auctionId), holdsShards: true) {
                let loaded = await registry.loadedActor(summary.auctionId) != nil
                if summary.endsAt <= now || !loaded { _ = await registry.submit(.close, to: summary.auctionId) }
            }
        }
    }

    private func perform(_ directives: [MembershipDirective]) {
        var viewChanged = false
        for directive in directives {
            switch directive {
            case .send(let message, let address):
                transport.send(.membership(message), to: address)
            case .changed(let from, let to):
                viewChanged = true
                note(from: from, to: to)
            }
        }
        if viewChanged {
            viewDidChange()
            run(chores.viewChanged(at: sinceStart))
        }
        if let sleepingUntil, membership.nextDeadline < sleepingUntil { doorbell.ring() }
    }

    private func note(from: Member?, to: Member) {
        if to.id == configuration.id {
            guard to.status == .alive else { return }
            counters.refutations += 1
            logger.notice("refuted a claim about this node", metadata: ["now": "\(to)"])
            return
        }
        switch to.status {
        case .suspect: counters.suspicions += 1
        case .dead: counters.deaths += 1
        case .alive, .left: break
        }
        // Suspicions and deaths are what an operator needs to read after an incident.
        logger.log(
            level: to.status == .alive && from?.status != .suspect ? .info : .notice,
            "member changed", metadata: ["member": "\(to.id)", "from": "\(from?.description ?? "-")", "to": "\(to)"])
        if !to.status.isLive {
            // Commands waiting on a node that is gone fail now, so they can be retried elsewhere.
            for (id, forward) in pending where forward.to == to.address {
                fail(id, .ownerUnavailable("\(to.id) is \(to.status)"))
            }
        }
    }

    private func viewDidChange() {
        let gateways = membership.members.filter { $0.status.isLive && $0.roles.contains(.gateway) }.count
        liveGatewayCount.withLock { $0 = max(1, gateways) }
        addressesSeen.withLock { seen in
            for member in membership.members { seen[member.id] = member.address }
        }
        routing.viewChanged(candidates: Placement.candidates(membership.members))
        placementView.withLock { [routing] in $0 = routing.candidates }
        // Without a majority every shard goes (see `MembershipInstance.holdsShards`).
        let (routing, keepsShards) = (routing, membership.holdsShards)
        background.spawn { [registry, weak self] in
            for shard in routing.shardsToRelease(among: await registry.ownedShards.keys, holdsShards: keepsShards) {
                await registry.release(shard)
                await self?.countRelease()
            }
        }
    }

    private func countRelease() {
        counters.shardsReleased += 1
        eventMetrics.shardReleases.increment()
    }

    // MARK: - Views

    /// This node's view of the cluster.
    public var snapshot: ClusterSnapshot {
        get async {
            let owned = await registry.ownedShards
            let mine = shardsPlacedHere
            return ClusterSnapshot(
                node: configuration.id.rawValue, generation: membership.myself.generation,
                members: membership.members.map {
                    .init(
                        id: $0.id.rawValue, address: $0.address.description, status: $0.status.description,
                        generation: $0.generation, incarnation: $0.incarnation,
                        roles: $0.roles.map(\.rawValue).sorted(),
                        http: nil)
                },
                shardsPlacedHere: mine,
                shardsHeld: owned.map { .init(shard: $0.key.rawValue, epoch: $0.value.rawValue) }.sorted {
                    $0.shard < $1.shard
                },
                reachesMajority: membership.seesMajority, counters: counters,
                payments: paymentsStatus.withLock { $0 })
        }
    }

    /// How many shards this node owns in its current view (rendezvous placement).
    private var shardsPlacedHere: Int {
        routing.shardsPlacedHere(of: configuration.shardMap)
    }

    /// The members as this node sees them.
    public var members: [Member] { membership.members }

    /// The registry's Prometheus text, the node's series brought up to date first (a gateway
    /// sharing the registry brings its own up to date before it calls this).
    public func metricsText() async -> String {
        await updateMetrics()
        return metricsRegistry.emitToString()
    }

    /// Brings the node's series in `metricsRegistry` up to date: its view of the cluster, its
    /// counters, its actors, its log writer, its transport and, with a provider, its payments.
    public func updateMetrics() async {
        let export = metricExport
        let byStatus = Dictionary(grouping: membership.members, by: \.status)
        for status in MemberStatus.allCases {
            export.gauge(
                "artpay_cluster_members", "Members of the cluster by state, as this node sees them.",
                Double(byStatus[status]?.count ?? 0), labels: [("state", "\(status)")])
        }
        export.counter(
            "artpay_cluster_suspicions_total", "Members this node saw become suspect.", total: counters.suspicions)
        export.counter(
            "artpay_cluster_refutations_total", "Suspicions of this node it refuted.", total: counters.refutations)
        export.counter("artpay_cluster_deaths_total", "Members this node saw declared dead.", total: counters.deaths)
        export.gauge(
            "artpay_cluster_local_health",
            "Lifeguard's local health multiplier: 0 when this node runs on time; probes slow down by 1 + it.",
            Double(membership.localHealth))
        export.counter(
            "artpay_cluster_frames_not_from_their_sender_total",
            "Frames a peer sent on behalf of another node (dropped).", total: counters.framesNotFromTheirSender)
        export.counter(
            "artpay_cluster_events_not_from_owner_total",
            "Pushed events from a node that does not own their shard in this node's view (dropped; read from the store).",
            total: eventsNotFromOwner.load(ordering: .relaxed))
        export.counter(
            "artpay_forwarded_commands_refused_total",
            "Commands other nodes forwarded here that their issuer may not run (checked again here).",
            total: forwardedCommandsRefused.load(ordering: .relaxed))
        let now = ContinuousClock.now
        export.gauge(
            "artpay_commands_running", "Commands running on this node as their auction's owner.", Double(running.count))
        export.gauge(
            "artpay_commands_overdue",
            "Commands running on this node for longer than the forward timeout (a wedged auction or store).",
            Double(running.values.filter { now - $0 > configuration.forwardTimeout }.count))
        export.counter(
            "artpay_commands_overdue_total", "Commands that answered only after the forward timeout.",
            total: counters.overdueCommands)
        export.gauge(
            "artpay_shards_held", "Shards this node holds a lease on.", Double(await registry.ownedShards.count))
        export.gauge(
            "artpay_shards_placed_here",
            "Shards this node owns in its view (placement; leases follow on first use). Over the nodes: all of them.",
            Double(shardsPlacedHere))
        export.gauge(
            "artpay_cluster_reaches_majority",
            "1 when this node reaches a majority of the cluster (without one it holds and takes no shard).",
            membership.seesMajority ? 1 : 0)
        let newestApplied = readModel.newestAppliedEventAt?.millisecondsSinceEpoch
        let lag = newestApplied.map { max(0, clock.now().millisecondsSinceEpoch - $0) } ?? 0
        export.gauge(
            "artpay_read_model_lag_seconds",
            "Now minus the time of the newest pushed event this node's read model applied (0 before the first).",
            Double(lag) / 1_000)
        export.gauge(
            "artpay_auctions_loaded", "Auctions with an actor on this node (idle ones passivate after a minute).",
            Double(await registry.activeAuctionCount))
        let transport = transport.metrics
        for (reason, total) in [
            ("tls", transport.refusedTLS), ("identity", transport.refusedIdentities),
            ("handshake", transport.refusedHandshakes), ("malformed_frame", transport.malformedFrames),
            ("oversized_frame", transport.oversizedFrames),
        ] {
            export.counter(
                "artpay_transport_refused_total", "Cluster connections or frames refused.", total: total,
                labels: [("reason", reason)])
        }
        export.counter(
            "artpay_transport_connections_established_total",
            "Cluster connections to or from peers that passed the handshake (reconnects count again).",
            total: transport.establishedConnections)
        guard let payments = paymentsStatus.withLock({ $0 }) else { return }
        for (name, help, total) in [
            ("artpay_payment_provider_calls_total", "Calls to the payment provider.", payments.providerCalls),
            (
                "artpay_payment_provider_failures_total",
                "Provider calls that failed (transport, timeout, 5xx, 429) and are retried with their key.",
                payments.providerFailures
            ),
            ("artpay_payment_authorizations_total", "Authorizations the provider granted.", payments.authorizations),
            ("artpay_payment_declines_total", "Authorizations the provider declined.", payments.declines),
            ("artpay_payment_captures_total", "Captures the provider confirmed.", payments.captures),
            ("artpay_payment_refunds_total", "Refunds the provider confirmed.", payments.refunds),
            (
                "artpay_payment_breaker_openings_total", "Times the provider's circuit breaker opened.",
                payments.breakerOpenings
            ),
            (
                "artpay_payment_buyers_blocked_total", "Buyers this node blocked from bidding after a default.",
                payments.buyersBlocked
            ),
        ] {
            export.counter(name, help, total: total)
        }
        for state in ["closed", "open", "half_open"] {
            export.gauge(
                "artpay_payment_breaker_state", "The provider's circuit breaker: 1 for its current state.",
                state == payments.breakerState ? 1 : 0, labels: [("state", state)])
        }
    }
}

/// `GET /v1/cluster`: one node's view of the cluster.
public struct ClusterSnapshot: Sendable, Codable {
    public struct MemberView: Sendable, Codable {
        public var id: String
        public var address: String
        public var status: String
        public var generation: UInt64
        public var incarnation: UInt64
        public var roles: [String]
        /// The member's web address, when the gateway knows it (see its `clusterHTTPPort`).
        public var http: String?
    }

    public struct HeldShard: Sendable, Codable {
        public var shard: Int32
        public var epoch: Int64
    }

    public var node: String
    public var generation: UInt64
    public var members: [MemberView]
    /// Shards this node owns in its current view (rendezvous placement).
    public var shardsPlacedHere: Int
    /// Shards this node holds a lease on (it served a command on them since the last view change).
    public var shardsHeld: [HeldShard]
    /// Whether this node reaches a majority of the cluster; without one it holds and takes no shard.
    public var reachesMajority: Bool
    public var counters: ClusterNode.Counters
    /// This node's settlement driver (nil when no payment provider is configured).
    public var payments: SettlementDriver.Counters?
}

/// The check installed by `checkForwardedCommands`, in a struct rather than bare in its `Mutex`: a
/// closure stored directly as a `Mutex`'s value is re-wrapped in two reabstraction thunks on every
/// `withLock` (the inout value is converted to the generic representation and back), so each read
/// made the next call one layer deeper — the cost of a forwarded bid grew with the number of
/// forwarded bids before it. A struct's stored closure is never converted.
private struct ForwardedCommandCheck: Sendable {
    let run: @Sendable (CommandIssuer, AuctionCommand) async -> EngineError?
}

extension Result<CommandAccepted, EngineError> {
    /// "accepted", or the error's stable code (for logs).
    var failureCode: String {
        switch self {
        case .success: "accepted"
        case .failure(let error): error.code
        }
    }
}
