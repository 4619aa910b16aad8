public enum PaymentMethodKind: IdentifierKind {}
public enum PaymentIntentKind: IdentifierKind {}

/// A payment method on file at the payment provider (a card token, `pm_…`).
public typealias PaymentMethodID = Identifier<PaymentMethodKind>
/// The provider's id of one authorization (a Stripe-shaped PaymentIntent, `pi_…`).
public typealias PaymentIntentID = Identifier<PaymentIntentKind>

/// One call to the payment provider whose idempotency key is in the log before the call is made.
///
/// Why in the log first: after a lost reply or a failover the owner re-sends the same key, so the
/// provider answers the first call's result instead of charging again. A key is
/// `settle:{auction}:{attempt}:{operation}` and never names two calls with different parameters.
public struct ProviderCall: Hashable, Sendable, Codable {
    public enum Operation: String, Hashable, Sendable, Codable {
        case authorize, capture, cancel, refund
    }

    public var operation: Operation
    /// Counts every call of this lot's settlement (all rounds): the key's `{attempt}`.
    public var attempt: Int
    public var idempotencyKey: String
    public var amount: Money?
    public var paymentMethod: PaymentMethodID?

    public init(
        operation: Operation, attempt: Int, auction: AuctionID, amount: Money?, paymentMethod: PaymentMethodID?
    ) {
        self.operation = operation
        self.attempt = attempt
        self.idempotencyKey = "settle:\(auction.rawValue):\(attempt):\(operation.rawValue)"
        self.amount = amount
        self.paymentMethod = paymentMethod
    }
}

/// A second-chance offer: the price at which the lot would have closed without the defaulting
/// buyer's bids, offered to the bidder who would then have won (see `SecondChance`).
public struct SecondChanceOffer: Hashable, Sendable, Codable {
    public var bidderId: UserID
    public var price: Money
    public var expiresAt: Timestamp

    public init(bidderId: UserID, price: Money, expiresAt: Timestamp) {
        self.bidderId = bidderId
        self.price = price
        self.expiresAt = expiresAt
    }
}

/// A fact of a lot's settlement, stored in the auction's own fenced log after its `closed` event,
/// so only the shard's current owner moves money for the lot and a failover resumes from the log.
public enum SettlementEvent: Hashable, Sendable, Codable {
    /// A round opens: the winner (round 1) or a second-chance buyer owes `invoice.total` by `dueBy`.
    case opened(round: Int, buyerId: UserID, invoice: Invoice, dueBy: Timestamp, remindAt: Timestamp, at: Timestamp)
    case paymentMethodChosen(method: PaymentMethodID, at: Timestamp)
    /// The key of a provider call, recorded before the call.
    case callStarted(call: ProviderCall, at: Timestamp)
    case authorized(attempt: Int, intent: PaymentIntentID, at: Timestamp)
    /// A business outcome (the card was declined): the buyer may choose another method until `dueBy`.
    case declined(attempt: Int, reason: String, at: Timestamp)
    case captured(attempt: Int, amount: Money, at: Timestamp)
    /// The provider refused a capture, cancel or refund for good (an expired authorization, say):
    /// a failed capture sends the buyer back to paying (like a decline); the others leave the
    /// settlement where it was.
    case callFailed(attempt: Int, reason: String, at: Timestamp)
    /// The seller's payout (hammer − commission) is recorded: the round is settled.
    case payoutRecorded(amount: Money, at: Timestamp)
    case reminded(at: Timestamp)
    /// The buyer did not pay by the deadline: blocked from bidding until an admin lifts it.
    case defaulted(buyerId: UserID, at: Timestamp)
    case secondChanceOffered(offer: SecondChanceOffer, at: Timestamp)
    case secondChanceAnswered(bidderId: UserID, accepted: Bool, at: Timestamp)
    case secondChanceExpired(at: Timestamp)
    /// Nobody pays for the lot: no eligible runner-up, or the offer was declined or expired.
    case unsold(reason: String, at: Timestamp)
    case refunded(attempt: Int, amount: Money, at: Timestamp)
    case cancelled(reason: String, at: Timestamp)
}
