/// The settlement of one sold lot as a pure state machine, in the style of `Auction`: `decide`
/// turns a command into events (or a rejection) without changing anything, `apply` folds one event.
/// No clock, no I/O: the owner's shell passes the time, makes the provider calls whose keys the
/// log holds (`inFlight`), and asks `nextCommand(now:)` what falls due.
///
/// Paths (every one ends in one of `Phase.isFinished`):
/// `due → authorizing → authorized → capturing → captured → settled` (→ `refunded`, admin);
/// `authorizing → declined → (another method) authorizing …`; `due | declined` past the deadline →
/// `defaulted → second_chance_offered → (accepted) due` as round 2, or → `unsold`;
/// `due | declined | authorized → cancelled` (admin, before capture).
///
/// Invariants: at most one provider call in flight, and its key is in the log before it is made;
/// a round captures at most once, exactly its invoice total; refunds never exceed what was
/// captured; a default only when no call is in flight (a call that may have charged is resolved
/// first).
public struct Settlement: Hashable, Sendable, Codable {
    public enum Phase: String, Hashable, Sendable, Codable, CaseIterable {
        case due, authorizing, authorized, capturing, captured, settled, declined, defaulted
        case secondChanceOffered = "second_chance_offered"
        case unsold, refunded, cancelled

        /// Nothing more happens by itself: the lot is paid (or refunded), cancelled or unsold.
        public var isFinished: Bool {
            switch self {
            case .settled, .refunded, .cancelled, .unsold: true
            default: false
            }
        }
    }

    public let auctionId: AuctionID
    /// Nil until the lot's settlement opens.
    public private(set) var phase: Phase?
    /// 1 for the winner, 2 for a second-chance buyer.
    public private(set) var round = 0
    public private(set) var buyerId: UserID?
    public private(set) var invoice: Invoice?
    public private(set) var dueBy: Timestamp?
    public private(set) var remindAt: Timestamp?
    public private(set) var reminded = false
    public private(set) var paymentMethod: PaymentMethodID?
    /// The provider call whose key is logged and whose outcome is not: re-send it with the same key.
    public private(set) var inFlight: ProviderCall?
    /// The number of the last provider call (all rounds): the next call's `attempt` is one more.
    public private(set) var attempts = 0
    public private(set) var intent: PaymentIntentID?
    public private(set) var captured: Money?
    public private(set) var refunded: Money?
    public private(set) var offer: SecondChanceOffer?
    /// Buyers who defaulted on this lot (the winner, and a second-chance buyer who did too).
    public private(set) var defaulters: [UserID] = []
    private var offerAccepted = false

    public init(auctionId: AuctionID) {
        self.auctionId = auctionId
    }

    public enum Decision: Hashable, Sendable {
        case accept([SettlementEvent])
        /// Already done, or an outcome for a call that is no longer in flight (a late or repeated
        /// webhook): nothing to record.
        case unchanged
        case reject(SettlementRejection)
    }

    /// - Parameter fees: the lot's money rules (its terms'), for the invoice of a round that opens.
    public func decide(_ command: SettlementCommand, fees: FeeSchedule, now: Timestamp) -> Decision {
        do throws(SettlementRejection) {
            return try decideThrowing(command, fees: fees, now: now)
        } catch {
            return .reject(error)
        }
    }

    /// Whether the lot waits for its second-chance offer: the owner computes it from the auction's
    /// log (`SecondChance.runnerUp`, without `defaulters`) and runs `offerSecondChance`.
    public var needsSecondChanceOffer: Bool { phase == .defaulted && inFlight == nil }

    /// A round that opened with nothing to pay with yet: the owner charges the buyer's saved
    /// payment method, if they have one, by `choosePaymentMethod` for them.
    public var awaitsPaymentMethod: Bool { phase == .due && paymentMethod == nil && inFlight == nil }

    /// What falls due at `now` for the owner to run, if anything (see also `needsSecondChanceOffer`): authorize once a method is on
    /// file, remind at half the deadline, default after it, expire an unanswered offer. A call in
    /// flight comes first — the shell re-sends `inFlight` with its key before anything else.
    public func nextCommand(now: Timestamp) -> SettlementCommand? {
        guard let phase, inFlight == nil else { return nil }
        switch phase {
        case .due, .declined:
            if let dueBy, now >= dueBy { return .declareDefault }
            if phase == .due, paymentMethod != nil { return .startAuthorization }
            if !reminded, let remindAt, now >= remindAt { return .remind }
            return nil
        case .authorized:
            return .startCapture
        case .secondChanceOffered:
            if let offer, now >= offer.expiresAt { return .expireSecondChance }
            return nil
        default:
            return nil
        }
    }

    private func decideThrowing(_ command: SettlementCommand, fees: FeeSchedule, now: Timestamp)
        throws(SettlementRejection) -> Decision
    {
        switch command {
        case .open(let buyerId, let hammer):
            guard phase == nil else { return .unchanged }
            return .accept([opening(round: 1, buyerId: buyerId, hammer: hammer, fees: fees, now: now)])

        case .choosePaymentMethod(let buyer, let method):
            let phase = try opened()
            guard buyer == buyerId else { throw .notTheBuyer }
            guard phase == .due || phase == .declined else { throw .wrongPhase(phase) }
            guard inFlight == nil else { throw .paymentInFlight }
            if let dueBy, now >= dueBy { throw .paymentOverdue(dueBy: dueBy) }
            guard method != paymentMethod else { return .unchanged }
            return .accept([.paymentMethodChosen(method: method, at: now)])

        case .startAuthorization:
            let phase = try opened()
            guard phase == .due || phase == .declined else { throw .wrongPhase(phase) }
            guard inFlight == nil else { throw .paymentInFlight }
            guard let paymentMethod, let invoice else { throw .noPaymentMethod }
            let call = ProviderCall(
                operation: .authorize, attempt: attempts + 1, auction: auctionId, amount: invoice.total,
                paymentMethod: paymentMethod)
            return .accept([.callStarted(call: call, at: now)])

        case .authorizationSucceeded(let attempt, let intent):
            guard phase == .authorizing, inFlight?.attempt == attempt else { return .unchanged }
            return .accept([.authorized(attempt: attempt, intent: intent, at: now)])

        case .authorizationDeclined(let attempt, let reason):
            guard phase == .authorizing, inFlight?.attempt == attempt else { return .unchanged }
            return .accept([.declined(attempt: attempt, reason: Self.bounded(reason), at: now)])

        case .startCapture:
            let phase = try opened()
            guard phase == .authorized else { throw .wrongPhase(phase) }
            guard inFlight == nil else { throw .paymentInFlight }
            let call = ProviderCall(
                operation: .capture, attempt: attempts + 1, auction: auctionId, amount: invoice?.total,
                paymentMethod: paymentMethod)
            return .accept([.callStarted(call: call, at: now)])

        case .captureSucceeded(let attempt, let amount):
            guard phase == .capturing, inFlight?.attempt == attempt, let invoice else { return .unchanged }
            guard amount.currency == invoice.total.currency else {
                throw .currencyMismatch(expected: invoice.total.currency)
            }
            guard amount == invoice.total else { throw .amountMismatch(expected: invoice.total) }
            return .accept([
                .captured(attempt: attempt, amount: amount, at: now),
                .payoutRecorded(amount: invoice.sellerPayout, at: now),
            ])

        case .remind:
            let phase = try opened()
            guard phase == .due || phase == .declined, !reminded else { return .unchanged }
            return .accept([.reminded(at: now)])

        case .declareDefault:
            let phase = try opened()
            guard inFlight == nil else { throw .paymentInFlight }
            guard phase == .due || phase == .declined else { throw .wrongPhase(phase) }
            guard let dueBy, now >= dueBy else { throw .notYetDue(dueBy: dueBy ?? now) }
            return .accept([.defaulted(buyerId: buyerId!, at: now)])

        case .offerSecondChance(let offer):
            let phase = try opened()
            guard phase == .defaulted else { throw .wrongPhase(phase) }
            // One second chance per lot: a second-chance buyer who defaults too ends it.
            guard let offer, round == 1, !defaulters.contains(offer.bidderId) else {
                return .accept([.unsold(reason: "no eligible runner-up", at: now)])
            }
            guard offer.price.currency == invoice?.hammer.currency else {
                throw .currencyMismatch(expected: invoice!.hammer.currency)
            }
            guard offer.price.minorUnits > 0, offer.expiresAt > now else { throw .invalidCommand("a usable offer") }
            return .accept([.secondChanceOffered(offer: offer, at: now)])

        case .answerSecondChance(let bidder, let accept):
            let phase = try opened()
            guard phase == .secondChanceOffered, let offer else { throw .wrongPhase(phase) }
            guard bidder == offer.bidderId else { throw .notTheOfferedBidder }
            guard now < offer.expiresAt else { throw .offerExpired }
            guard accept else {
                return .accept([
                    .secondChanceAnswered(bidderId: bidder, accepted: false, at: now),
                    .unsold(reason: "the second-chance offer was declined", at: now),
                ])
            }
            return .accept([
                .secondChanceAnswered(bidderId: bidder, accepted: true, at: now),
                opening(round: 2, buyerId: bidder, hammer: offer.price, fees: fees, now: now),
            ])

        case .expireSecondChance:
            let phase = try opened()
            guard phase == .secondChanceOffered, let offer else { return .unchanged }
            guard now >= offer.expiresAt else { throw .notYetDue(dueBy: offer.expiresAt) }
            return .accept([
                .secondChanceExpired(at: now), .unsold(reason: "the second-chance offer expired", at: now),
            ])

        case .startRefund(let amount):
            let phase = try opened()
            guard phase == .settled || phase == .refunded, let captured else { throw .wrongPhase(phase) }
            guard inFlight == nil else { throw .paymentInFlight }
            guard amount.currency == captured.currency else { throw .currencyMismatch(expected: captured.currency) }
            let refundable = Money(
                minorUnits: captured.minorUnits - (refunded?.minorUnits ?? 0), currency: captured.currency)
            guard amount.minorUnits > 0 else { throw .invalidCommand("a positive refund") }
            guard amount <= refundable else { throw .refundAboveCaptured(refundable: refundable) }
            let call = ProviderCall(
                operation: .refund, attempt: attempts + 1, auction: auctionId, amount: amount, paymentMethod: nil)
            return .accept([.callStarted(call: call, at: now)])

        case .refundSucceeded(let attempt):
            guard let call = inFlight, call.operation == .refund, call.attempt == attempt, let amount = call.amount
            else { return .unchanged }
            return .accept([.refunded(attempt: attempt, amount: amount, at: now)])

        case .cancel(let reason):
            let phase = try opened()
            let text = Self.bounded(reason)
            guard !text.isEmpty else { throw .invalidCommand("a reason") }
            guard inFlight == nil else { throw .paymentInFlight }
            switch phase {
            case .due, .declined, .defaulted, .secondChanceOffered:
                return .accept([.cancelled(reason: text, at: now)])
            case .authorized:
                // The authorization is released at the provider first; `cancelSucceeded` ends it.
                let call = ProviderCall(
                    operation: .cancel, attempt: attempts + 1, auction: auctionId, amount: nil, paymentMethod: nil)
                return .accept([.callStarted(call: call, at: now)])
            default:
                throw .wrongPhase(phase)
            }

        case .callFailed(let attempt, let reason):
            guard let call = inFlight, call.attempt == attempt, call.operation != .authorize else { return .unchanged }
            return .accept([.callFailed(attempt: attempt, reason: Self.bounded(reason), at: now)])

        case .cancelSucceeded(let attempt, let reason):
            guard let call = inFlight, call.operation == .cancel, call.attempt == attempt else { return .unchanged }
            return .accept([.cancelled(reason: Self.bounded(reason), at: now)])
        }
    }

    private func opened() throws(SettlementRejection) -> Phase {
        guard let phase else { throw .notOpen }
        return phase
    }

    private func opening(round: Int, buyerId: UserID, hammer: Money, fees: FeeSchedule, now: Timestamp)
        -> SettlementEvent
    {
        let dueBy = now.advanced(by: fees.paymentDeadline)
        return .opened(
            round: round, buyerId: buyerId, invoice: fees.invoice(hammer: hammer), dueBy: dueBy,
            remindAt: now.advanced(by: fees.paymentDeadline / 2), at: now)
    }

    /// Reasons come from the provider or an admin: kept printable and within the wire's limit.
    static func bounded(_ text: String) -> String {
        var scalars = String.UnicodeScalarView(text.unicodeScalars.filter { $0.properties.generalCategory != .control })
        while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() }
        return TextLimits.truncated(String(scalars), maximumBytes: TextLimits.cancelReasonBytes)
    }

    // MARK: - Applying events

    /// Folds one event. Throws when it cannot follow the current state (a corrupt or foreign log);
    /// the state is then unchanged.
    public mutating func apply(_ event: SettlementEvent) throws(SettlementApplicationError) {
        var next = self
        try next.advance(with: event)
        self = next
    }

    private mutating func advance(with event: SettlementEvent) throws(SettlementApplicationError) {
        func require(_ condition: Bool, _ reason: String) throws(SettlementApplicationError) {
            guard condition else {
                throw SettlementApplicationError(
                    auctionId: auctionId, reason: "\(reason) (phase \(phase?.rawValue ?? "none"))")
            }
        }
        switch event {
        case .opened(let round, let buyer, let invoice, let dueBy, let remindAt, _):
            try require(
                (round == 1 && phase == nil) || (round == 2 && phase == .secondChanceOffered && offerAccepted),
                "a round opens only on a sold lot or an accepted offer")
            self.round = round
            buyerId = buyer
            self.invoice = invoice
            self.dueBy = dueBy
            self.remindAt = remindAt
            reminded = false
            paymentMethod = nil
            intent = nil
            offer = nil
            offerAccepted = false
            phase = .due
        case .paymentMethodChosen(let method, _):
            try require((phase == .due || phase == .declined) && inFlight == nil, "a method while waiting to pay")
            paymentMethod = method
            if phase == .declined { phase = .due }
        case .callStarted(let call, _):
            try require(inFlight == nil && call.attempt == attempts + 1, "one call at a time, numbered in order")
            switch call.operation {
            case .authorize:
                try require(phase == .due || phase == .declined, "authorize while due")
                phase = .authorizing
            case .capture:
                try require(phase == .authorized && captured == nil, "capture once, after authorizing")
                phase = .capturing
            case .cancel:
                try require(phase == .authorized, "cancel an authorization")
            case .refund:
                try require((phase == .settled || phase == .refunded) && captured != nil, "refund a capture")
            }
            attempts = call.attempt
            inFlight = call
        case .authorized(let attempt, let intent, _):
            try require(phase == .authorizing && inFlight?.attempt == attempt, "authorized while authorizing")
            self.intent = intent
            inFlight = nil
            phase = .authorized
        case .declined(let attempt, _, _):
            try require(phase == .authorizing && inFlight?.attempt == attempt, "declined while authorizing")
            inFlight = nil
            paymentMethod = nil
            phase = .declined
        case .captured(let attempt, let amount, _):
            try require(
                phase == .capturing && inFlight?.attempt == attempt && amount == invoice?.total,
                "capture the invoice total once")
            captured = amount
            inFlight = nil
            phase = .captured
        case .callFailed(let attempt, _, _):
            try require(
                inFlight?.attempt == attempt && inFlight?.operation != .authorize, "a capture, cancel or refund failed")
            if inFlight?.operation == .capture {
                intent = nil
                paymentMethod = nil
                phase = .declined
            }
            inFlight = nil
        case .payoutRecorded(let amount, _):
            try require(phase == .captured && amount == invoice?.sellerPayout, "the payout follows the capture")
            phase = .settled
        case .reminded:
            try require(phase == .due || phase == .declined, "remind while due")
            reminded = true
        case .defaulted(let buyer, _):
            try require((phase == .due || phase == .declined) && inFlight == nil, "default while due")
            defaulters.append(buyer)
            phase = .defaulted
        case .secondChanceOffered(let offer, _):
            try require(phase == .defaulted, "an offer after a default")
            self.offer = offer
            phase = .secondChanceOffered
        case .secondChanceAnswered(let bidder, let accepted, _):
            try require(phase == .secondChanceOffered && offer?.bidderId == bidder, "the offered bidder answers")
            offerAccepted = accepted
        case .secondChanceExpired:
            try require(phase == .secondChanceOffered, "an offer expires")
        case .unsold:
            try require(phase == .defaulted || phase == .secondChanceOffered, "unsold after a default")
            phase = .unsold
        case .refunded(let attempt, let amount, _):
            try require(
                inFlight?.operation == .refund && inFlight?.attempt == attempt && inFlight?.amount == amount,
                "the refund in flight")
            let already = refunded?.minorUnits ?? 0
            try require(amount.minorUnits + already <= (captured?.minorUnits ?? 0), "refunds within the capture")
            refunded = Money(minorUnits: already + amount.minorUnits, currency: amount.currency)
            inFlight = nil
            phase = .refunded
        case .cancelled:
            let cancellable: Set<Phase> = [.due, .declined, .defaulted, .secondChanceOffered, .authorized]
            try require(phase.map(cancellable.contains) ?? false, "cancel before capture")
            try require(inFlight == nil || inFlight?.operation == .cancel, "no payment in flight")
            inFlight = nil
            phase = .cancelled
        }
    }

    public mutating func apply(contentsOf events: some Sequence<SettlementEvent>) throws(SettlementApplicationError) {
        for event in events { try apply(event) }
    }

    /// Rebuilds a settlement from its events.
    public static func replay(auctionId: AuctionID, events: some Sequence<SettlementEvent>)
        throws(SettlementApplicationError) -> Settlement
    {
        var settlement = Settlement(auctionId: auctionId)
        for event in events { try settlement.apply(event) }
        return settlement
    }
}

/// What the settlement of a lot is asked to do: by the owner's shell (what `nextCommand` returned,
/// and the provider's answers), by the buyer and by an admin.
public enum SettlementCommand: Hashable, Sendable, Codable {
    /// The lot closed sold to `buyerId` at `hammer`.
    case open(buyerId: UserID, hammer: Money)
    case choosePaymentMethod(buyerId: UserID, method: PaymentMethodID)
    case startAuthorization
    case authorizationSucceeded(attempt: Int, intent: PaymentIntentID)
    case authorizationDeclined(attempt: Int, reason: String)
    case startCapture
    case captureSucceeded(attempt: Int, amount: Money)
    case remind
    case declareDefault
    /// The runner-up's offer (`SecondChance.offer`), or nil when nobody is eligible.
    case offerSecondChance(offer: SecondChanceOffer?)
    case answerSecondChance(bidderId: UserID, accept: Bool)
    case expireSecondChance
    case startRefund(amount: Money)
    case refundSucceeded(attempt: Int)
    case cancel(reason: String)
    case cancelSucceeded(attempt: Int, reason: String)
    /// The provider refused the capture, cancel or refund in flight for good (not a transport
    /// error or a 5xx, which are retried with the same key).
    case callFailed(attempt: Int, reason: String)
}

/// Why a settlement refused a command, with a stable `code` for the API and a human `message`.
public enum SettlementRejection: Error, Hashable, Sendable, Codable {
    case notOpen
    case notTheBuyer
    case noPaymentMethod
    case paymentInFlight
    case wrongPhase(Settlement.Phase)
    case paymentOverdue(dueBy: Timestamp)
    case notYetDue(dueBy: Timestamp)
    case amountMismatch(expected: Money)
    case currencyMismatch(expected: Currency)
    case refundAboveCaptured(refundable: Money)
    case notTheOfferedBidder
    case offerExpired
    case invalidCommand(String)

    public var code: String {
        switch self {
        case .notOpen: "settlement_not_found"
        case .notTheBuyer: "not_the_buyer"
        case .noPaymentMethod: "no_payment_method"
        case .paymentInFlight: "payment_in_progress"
        case .wrongPhase: "settlement_state_conflict"
        case .paymentOverdue: "payment_overdue"
        case .notYetDue: "not_yet_due"
        case .amountMismatch: "amount_mismatch"
        case .currencyMismatch: "currency_mismatch"
        case .refundAboveCaptured: "refund_above_captured"
        case .notTheOfferedBidder: "not_the_offered_bidder"
        case .offerExpired: "offer_expired"
        case .invalidCommand: "invalid_command"
        }
    }

    public var message: String {
        switch self {
        case .notOpen: "This lot has no settlement."
        case .notTheBuyer: "This invoice belongs to another buyer."
        case .noPaymentMethod: "Choose a payment method first."
        case .paymentInFlight: "A payment step is in progress; try again in a moment."
        case .wrongPhase(let phase): "The settlement is \(phase.rawValue); that is not possible now."
        case .paymentOverdue(let dueBy): "The payment deadline (\(dueBy)) has passed."
        case .notYetDue(let dueBy): "That is only possible after \(dueBy)."
        case .amountMismatch(let expected): "The amount must be \(expected)."
        case .currencyMismatch(let expected): "The currency must be \(expected.code)."
        case .refundAboveCaptured(let refundable): "At most \(refundable) can still be refunded."
        case .notTheOfferedBidder: "This offer was made to another bidder."
        case .offerExpired: "The offer has expired."
        case .invalidCommand(let what): "The request is invalid: it needs \(what)."
        }
    }
}

public struct SettlementApplicationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var auctionId: AuctionID
    public var reason: String

    public var description: String { "a settlement event of \(auctionId) does not apply: \(reason)" }
}
