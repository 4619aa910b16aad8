public import AuctionCore
public import AuctionRuntime
public import Logging
public import Payments
public import Storage

/// Runs the settlements of the lots this node owns: sends the provider call whose key is in the
/// log (again, with the same key, after a lost answer or a failover), records its outcome, and
/// runs what falls due (charge the buyer's saved payment method, authorize, capture, remind,
/// default — blocking the buyer from bidding —, second-chance offer, expiry).
///
/// Why it is safe to run anywhere at any time: it decides nothing itself. Every step goes through
/// the lot's owner (`ClusterNode.submit`) and the settlement rules, which refuse stale steps; a
/// provider call is only ever made for a key the fenced log already holds, so two nodes that both
/// believe they own a lot during a failover send the same key, and the provider moves money once.
/// Every provider call passes the circuit breaker and has the client's deadline.
public actor SettlementDriver {
    public struct Settings: Sendable {
        /// How often the settlements in progress are looked at.
        public var pollInterval: Duration = .milliseconds(250)
        /// The first wait after a failed call; doubles up to `maximumRetryDelay`.
        public var retryDelay: Duration = .milliseconds(500)
        public var maximumRetryDelay: Duration = .seconds(60)
        public var breaker = CircuitBreaker.Settings()
        /// Debug only (`debug.unsafeFreshIdempotencyKeys`): every send gets a key of its own instead
        /// of the one logged before the call, as if keys were not persisted — a retry after a lost
        /// answer then moves money again. The chaos checker must report it.
        public var unsafeFreshKeys = false

        public init() {}
    }

    /// What the driver did, for `/metrics` and `/v1/cluster`.
    public struct Counters: Sendable, Codable {
        public var providerCalls = 0
        public var providerFailures = 0
        public var authorizations = 0
        public var declines = 0
        public var captures = 0
        public var refunds = 0
        public var breakerOpenings = 0
        /// Buyers this node blocked from bidding after a default.
        public var buyersBlocked = 0
        public var breakerState = "closed"
    }

    private let node: ClusterNode
    private let provider: any PaymentProvider
    private let store: any EventStore
    private let users: any UserStore
    private let clock: any EngineClock
    private let logger: Logger
    private let settings: Settings
    private var breaker: CircuitBreaker
    private var busy: Set<AuctionID> = []
    /// When the call in flight of a lot may be resent, for that call's attempt only: a later step
    /// of the lot (recorded meanwhile by another node, or by a webhook) is never held back by it.
    private var callRetry: [AuctionID: (attempt: Int, at: Timestamp, failures: Int)] = [:]
    /// When a lot's other steps may be tried again after one was not recorded.
    private var stepRetry: [AuctionID: Timestamp] = [:]
    private var counts = Counters()
    /// Rung when the read model applies a settlement event: the next scan starts then, not at the
    /// next poll (the poll remains for deadlines and retries).
    private let doorbell = Doorbell()
    /// The round of each lot whose buyer's saved payment methods were looked up: once per round and
    /// node, so a buyer with none costs one query, not one per poll.
    private var savedMethodLookedUp: [AuctionID: Int] = [:]

    public init(
        node: ClusterNode, provider: any PaymentProvider, store: any EventStore, users: any UserStore,
        clock: any EngineClock, logger: Logger, settings: Settings = .init()
    ) {
        self.node = node
        self.provider = provider
        self.store = store
        self.users = users
        self.clock = clock
        self.logger = logger
        self.settings = settings
        self.breaker = CircuitBreaker(settings: settings.breaker)
    }

    public var counters: Counters {
        var counters = counts
        counters.breakerOpenings = breaker.timesOpened
        counters.breakerState = breaker.stateName(at: clock.now())
        return counters
    }

    /// Drives settlements until the task is cancelled; one step per lot at a time.
    public func run() async {
        let doorbell = doorbell
        await node.readModel.onSettlementEvents { doorbell.ring() }
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                let now = clock.now()
                let inProgress = node.readModel.settlementsInProgress
                // What is kept per lot goes with the lot's settlement.
                let open = Set(inProgress.map(\.auctionId))
                callRetry = callRetry.filter { open.contains($0.key) }
                stepRetry = stepRetry.filter { open.contains($0.key) }
                savedMethodLookedUp = savedMethodLookedUp.filter { open.contains($0.key) }
                for settlement in inProgress {
                    let id = settlement.auctionId
                    guard !busy.contains(id) else { continue }
                    if let call = settlement.inFlight {
                        if let wait = callRetry[id], wait.attempt == call.attempt, wait.at > now { continue }
                        if let open = breaker.retryAt, open > now { continue }
                    } else if let wait = stepRetry[id], wait > now {
                        continue
                    }
                    guard
                        settlement.inFlight != nil || settlement.needsSecondChanceOffer
                            || needsSavedMethodLookup(settlement) || settlement.nextCommand(now: now) != nil
                    else { continue }
                    guard await node.owns(id) else { continue }
                    busy.insert(id)
                    group.addTask { await self.step(id) }
                }
                node.paymentsStatus.withLock { $0 = counters }
                await doorbell.wait(upTo: settings.pollInterval)
            }
        }
    }

    /// Runs the lot's steps one after the other while each is recorded and the next is due (a
    /// saved card: choose, authorize, send, record, capture, send, record), instead of one per poll.
    private func step(_ id: AuctionID) async {
        defer { busy.remove(id) }
        for _ in 0..<Self.stepsInARow {
            // The latest view: the read model may have moved on since the scan.
            guard let settlement = node.readModel.settlement(of: id), settlement.phase?.isFinished == false,
                let recorded = await stepOnce(settlement),
                await readModelReaches(recorded, of: id),
                await node.owns(id)
            else { return }
        }
    }

    private static let stepsInARow = 8

    /// One step of `settlement`; the lot's seq once the step is recorded, nil when nothing was.
    private func stepOnce(_ settlement: Settlement) async -> Int64? {
        let id = settlement.auctionId
        let now = clock.now()
        if let call = settlement.inFlight {
            if let wait = callRetry[id], wait.attempt == call.attempt, wait.at > now { return nil }
            return await resolve(call, of: settlement)
        } else if let wait = stepRetry[id], wait > now {
            return nil
        } else if settlement.needsSecondChanceOffer {
            guard await blockDefaulters(of: settlement) else { return nil }
            return await offerSecondChance(for: settlement)
        } else if needsSavedMethodLookup(settlement) {
            return await chargeSavedMethod(for: settlement)
        } else if let command = settlement.nextCommand(now: now) {
            return await submit(command, to: id)
        }
        return nil
    }

    /// Waits (briefly: the owner's own read model follows its appends within milliseconds) until
    /// this node's read model has the lot at `seq`, so the next step starts from what was recorded.
    private func readModelReaches(_ seq: Int64, of id: AuctionID) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline {
            if let summary = node.readModel.summary(of: id), summary.seq >= seq { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return false
    }

    // MARK: - Provider calls

    private func resolve(_ call: ProviderCall, of settlement: Settlement) async -> Int64? {
        let id = settlement.auctionId
        let now = clock.now()
        // Open (the loop waits for `retryAt`) or half-open with every probe out: later.
        guard breaker.permit(now: now) else { return nil }
        counts.providerCalls += 1
        let started = clock.now()
        do throws(ProviderError) {
            let outcome = try await send(call, of: settlement)
            breaker.record(.answered, startedAt: started, now: clock.now())
            callRetry[id] = nil
            return await submit(outcome, to: id)
        } catch {
            breaker.record(error.breakerResult, startedAt: started, now: clock.now())
            if error.isRetryable {
                counts.providerFailures += 1
                let previous = callRetry[id].flatMap { $0.attempt == call.attempt ? $0.failures : nil } ?? 0
                let failed = previous + 1
                var delay = settings.retryDelay
                for _ in 1..<min(failed, 16) { delay = min(delay * 2, settings.maximumRetryDelay) }
                if case .rateLimited(let seconds?) = error { delay = max(delay, .seconds(seconds)) }
                callRetry[id] = (call.attempt, clock.now().advanced(by: delay), failed)
                logger.debug(
                    "provider call failed; the same key goes again",
                    metadata: ["key": "\(call.idempotencyKey)", "error": "\(error)", "retryIn": "\(delay)"])
                return nil
            }
            callRetry[id] = nil
            switch error {
            case .idempotencyConflict(let message):
                // The key was used with other parameters: a bug here, never resolved by retrying.
                logger.error(
                    "the provider refused a reused idempotency key",
                    metadata: ["key": "\(call.idempotencyKey)", "detail": "\(message)"])
                callRetry[id] = (call.attempt, clock.now().advanced(by: settings.maximumRetryDelay), 0)
                return nil
            case .declined(let code, _), .refused(_, let code, _):
                let outcome: SettlementCommand =
                    call.operation == .authorize
                    ? .authorizationDeclined(attempt: call.attempt, reason: code)
                    : .callFailed(attempt: call.attempt, reason: code)
                if call.operation == .authorize { counts.declines += 1 }
                return await submit(outcome, to: id)
            default:
                return nil
            }
        }
    }

    /// Makes `call` with its logged key and says what the settlement should record.
    private func send(_ call: ProviderCall, of settlement: Settlement) async throws(ProviderError)
        -> SettlementCommand
    {
        let id = settlement.auctionId
        var call = call
        if settings.unsafeFreshKeys {
            call.idempotencyKey += "~\(UInt64.random(in: 0...UInt64.max))"
        }
        switch call.operation {
        case .authorize:
            guard let amount = call.amount, let method = call.paymentMethod else {
                throw .refused(status: 0, code: "incomplete_call", message: "an authorization without amount or method")
            }
            let intent = try await provider.authorize(
                amount: amount, paymentMethod: method, key: call.idempotencyKey,
                metadata: ["auction": id.rawValue, "attempt": "\(call.attempt)"])
            guard intent.status == "requires_capture", let intentId = PaymentIntentID(rawValue: intent.id) else {
                throw .refused(status: 0, code: "unexpected_status", message: intent.status)
            }
            counts.authorizations += 1
            return .authorizationSucceeded(attempt: call.attempt, intent: intentId)
        case .capture:
            guard let amount = call.amount, let intent = settlement.intent else {
                throw .refused(status: 0, code: "incomplete_call", message: "a capture without amount or intent")
            }
            let captured = try await provider.capture(intent: intent, amount: amount, key: call.idempotencyKey)
            counts.captures += 1
            return .captureSucceeded(
                attempt: call.attempt, amount: Money(minorUnits: captured.amountReceived, currency: amount.currency))
        case .cancel:
            guard let intent = settlement.intent else {
                throw .refused(status: 0, code: "incomplete_call", message: "a cancel without intent")
            }
            _ = try await provider.cancel(intent: intent, key: call.idempotencyKey)
            return .cancelSucceeded(attempt: call.attempt, reason: "cancelled by an admin")
        case .refund:
            guard let amount = call.amount, let intent = settlement.intent else {
                throw .refused(status: 0, code: "incomplete_call", message: "a refund without amount or intent")
            }
            _ = try await provider.refund(intent: intent, amount: amount, key: call.idempotencyKey)
            counts.refunds += 1
            return .refundSucceeded(attempt: call.attempt)
        }
    }

    // MARK: - Saved payment methods

    private func needsSavedMethodLookup(_ settlement: Settlement) -> Bool {
        settlement.awaitsPaymentMethod && savedMethodLookedUp[settlement.auctionId] != settlement.round
    }

    /// Pays a round that opened without a payment method with the buyer's default saved one, as if
    /// the buyer had chosen it; a buyer with none pays through the API as before. Once per round:
    /// a saved card that is declined is not tried again by itself.
    private func chargeSavedMethod(for settlement: Settlement) async -> Int64? {
        guard let buyer = settlement.buyerId else { return nil }
        let methods: [SavedPaymentMethod]
        do {
            methods = try await users.paymentMethods(of: buyer)
        } catch {
            stepRetry[settlement.auctionId] = clock.now().advanced(by: settings.retryDelay)
            return nil
        }
        savedMethodLookedUp[settlement.auctionId] = settlement.round
        guard let method = methods.first else { return nil }
        logger.info(
            "charging the buyer's saved payment method",
            metadata: ["auction": "\(settlement.auctionId)", "round": "\(settlement.round)", "brand": "\(method.brand)"])
        return await submit(.choosePaymentMethod(buyerId: buyer, method: method.id), to: settlement.auctionId)
    }

    // MARK: - Defaults

    /// Blocks every buyer who defaulted on the lot from bidding, on every node at once (the store
    /// is the truth; every member drops its cached standing), before the lot moves on. Idempotent:
    /// a block an admin lifted is not recorded again. Whether every block is recorded.
    private func blockDefaulters(of settlement: Settlement) async -> Bool {
        for buyer in settlement.defaulters {
            do {
                if try await users.blockFromBidding(buyer, defaultedOn: settlement.auctionId, at: clock.now()) {
                    logger.notice(
                        "a buyer who did not pay is blocked from bidding",
                        metadata: ["auction": "\(settlement.auctionId)", "buyer": "\(buyer)"])
                    counts.buyersBlocked += 1
                }
            } catch {
                stepRetry[settlement.auctionId] = clock.now().advanced(by: settings.retryDelay)
                return false
            }
            await node.announceUserChange(buyer)
        }
        return true
    }

    // MARK: - Second chance

    private func offerSecondChance(for settlement: Settlement) async -> Int64? {
        let id = settlement.auctionId
        var log: [AuctionEvent] = []
        var after: Int64 = 0
        do {
            while true {
                let page = try await store.events(of: id, after: after, limit: 1_000)
                guard let last = page.last else { break }
                log += page.map(\.event)
                after = last.seq
            }
        } catch {
            stepRetry[id] = clock.now().advanced(by: settings.retryDelay)
            return nil
        }
        guard case .created(let created)? = log.first else { return nil }
        let runnerUp = SecondChance.runnerUp(in: log, excluding: Set(settlement.defaulters))
        let offer = runnerUp.map {
            SecondChanceOffer(
                bidderId: $0.bidderId, price: $0.price,
                expiresAt: clock.now().advanced(by: created.terms.fees.secondChanceWindow))
        }
        return await submit(.offerSecondChance(offer: offer), to: id)
    }

    /// Runs `command` on the lot's owner; the lot's seq after it, or nil when it was not recorded
    /// (the lot's other steps then wait `retryDelay`).
    private func submit(_ command: SettlementCommand, to id: AuctionID) async -> Int64? {
        switch await node.submit(.settle(command), to: id) {
        case .failure(let error):
            logger.info(
                "a settlement step was not recorded",
                metadata: ["auction": "\(id)", "step": "\(command)", "error": "\(error)"])
            stepRetry[id] = clock.now().advanced(by: settings.retryDelay)
            return nil
        case .success(let accepted):
            stepRetry[id] = nil
            return accepted.seq
        }
    }
}
