/// Why the auction refused a command. Each case carries the figure a client needs to act on it
/// (the minimum it must bid, the currency it must use), has a stable `code` for the API and a
/// human `message`. A rejected command changes nothing: it produces no event.
public enum AuctionRejection: Error, Hashable, Sendable {
    case auctionNotFound
    case auctionAlreadyExists
    /// The auction's terms (prices, times, increments) are not usable; the text says which rule broke.
    case invalidTerms(String)
    /// A command field is malformed (an empty cancel reason, say); the text names it.
    case invalidCommand(String)
    /// Amounts must be positive.
    case invalidAmount
    /// Amounts are capped at `Money.maximumMinorUnits`.
    case amountTooLarge(limitMinorUnits: Int64)
    case currencyMismatch(expected: Currency)
    case notOpenYet(opensAt: Timestamp)
    case auctionClosed
    case auctionCancelled
    /// The maximum is below the lowest bid the auction accepts now.
    case belowMinimum(minimum: Money)
    /// The current leader may raise their own maximum, but only above the one they have.
    case maximumNotAboveCurrent(currentMaximum: Money)
    case sellerCannotBid
    /// The bid id was used before for a different bid (another bidder or amount).
    case bidIdConflict(BidID)
    case buyNowUnavailable
    case buyNowPriceMismatch(buyNowPrice: Money)
    /// The auction cannot be closed before its (possibly extended) end.
    case notYetEnded(endsAt: Timestamp)
    /// The lot's settlement refused the step; its own code and message say why.
    case settlement(SettlementRejection)

    /// The stable, machine-readable code of the rejection, used by the API and in logs.
    public var code: String {
        switch self {
        case .auctionNotFound: "auction_not_found"
        case .auctionAlreadyExists: "auction_already_exists"
        case .invalidTerms: "invalid_terms"
        case .invalidCommand: "invalid_command"
        case .invalidAmount: "invalid_amount"
        case .amountTooLarge: "amount_too_large"
        case .currencyMismatch: "currency_mismatch"
        case .notOpenYet: "auction_not_open"
        case .auctionClosed: "auction_closed"
        case .auctionCancelled: "auction_cancelled"
        case .belowMinimum: "below_minimum"
        case .maximumNotAboveCurrent: "maximum_not_above_current"
        case .sellerCannotBid: "seller_cannot_bid"
        case .bidIdConflict: "bid_id_conflict"
        case .buyNowUnavailable: "buy_now_unavailable"
        case .buyNowPriceMismatch: "buy_now_price_mismatch"
        case .notYetEnded: "auction_not_ended"
        case .settlement(let rejection): rejection.code
        }
    }

    /// A sentence a person can read.
    public var message: String {
        switch self {
        case .auctionNotFound: "There is no such auction."
        case .auctionAlreadyExists: "An auction with this id already exists."
        case .invalidTerms(let reason): "The auction terms are invalid: \(reason)."
        case .invalidCommand(let reason): "The request is invalid: \(reason)."
        case .invalidAmount: "The amount must be positive."
        case .amountTooLarge(let limit): "The amount exceeds the limit of \(limit) minor units."
        case .currencyMismatch(let expected): "This auction takes bids in \(expected.code) only."
        case .notOpenYet(let opensAt): "The auction opens at \(opensAt)."
        case .auctionClosed: "The auction is closed."
        case .auctionCancelled: "The auction was cancelled."
        case .belowMinimum(let minimum): "The bid must be at least \(minimum)."
        case .maximumNotAboveCurrent(let current):
            "You are leading; a new maximum must exceed your current maximum of \(current)."
        case .sellerCannotBid: "The seller cannot bid on their own lot."
        case .bidIdConflict(let bidId): "Bid id \(bidId) was already used for a different bid."
        case .buyNowUnavailable: "Buy now is not available for this auction any more."
        case .buyNowPriceMismatch(let price): "The buy-now price is \(price)."
        case .notYetEnded(let endsAt): "The auction runs until \(endsAt)."
        case .settlement(let rejection): rejection.message
        }
    }
}
