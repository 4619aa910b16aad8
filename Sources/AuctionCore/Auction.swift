/// One auction as a pure state machine: `decide` turns a command into events (or a rejection)
/// without changing anything; `apply` folds one event into the state. Nothing here reads a clock,
/// does I/O or draws random numbers, so replaying the log rebuilds exactly the live state.
///
/// `seq` counts the events applied: the next event decided gets `seq + 1`. An auction that has not
/// been created yet has `state == nil` and `seq == 0`.
public struct Auction: Hashable, Sendable {
    public let id: AuctionID
    public private(set) var seq: Int64
    public private(set) var state: AuctionState?
    /// Every accepted bid by its id: the answer to a resubmission (invariant 5). Kept beside the
    /// state, not inside it, so that the state (what read models fold and summaries show) is small
    /// and copying it never copies the auction's bid history; old bids only as fingerprints.
    public private(set) var ledger: BidLedger

    public init(id: AuctionID) {
        self.id = id
        self.seq = 0
        self.state = nil
        self.ledger = BidLedger()
    }

    /// What the auction makes of `command` at `now`.
    public enum Decision: Hashable, Sendable {
        /// Append these events, in order; the command succeeds once they are durable.
        case accept([AuctionEvent])
        /// The bid id was accepted before with the same content: answer with its receipt, append nothing.
        case alreadyAccepted(BidReceipt)
        /// The auction exists with these very terms: a create sent again (a retry after its answer
        /// was lost or late) succeeds again and appends nothing.
        case alreadyCreated
        /// An older bid may have had this id (its fingerprint matches): read that bid's receipt
        /// from the log, `restore` it and decide again — or, when the log has none, decide again
        /// with `checkedLogFor` set to this id.
        case lookUpInLog(BidID)
        case reject(AuctionRejection)
    }

    /// - Parameter checkedLogFor: a bid id the log was searched for without finding an acceptance,
    ///   after a `lookUpInLog` decision: it is new, whatever its fingerprint says.
    public func decide(_ command: AuctionCommand, now: Timestamp, checkedLogFor: BidID? = nil) -> Decision {
        do throws(AuctionRejection) {
            switch command {
            case .create(let terms):
                if let state, state.terms == terms { return .alreadyCreated }
                return .accept(try decideCreate(terms, now: now))
            case .placeBid(let bid):
                let state = try existing()
                switch try previous(
                    bidId: bid.bidId, bidderId: bid.bidderId, amount: bid.maximum, checked: checkedLogFor)
                {
                case .receipt(let receipt): return .alreadyAccepted(receipt)
                case .inLog: return .lookUpInLog(bid.bidId)
                case .unknown: return .accept(try state.decideBid(bid, now: now))
                }
            case .buyNow(let purchase):
                let state = try existing()
                switch try previous(
                    bidId: purchase.bidId, bidderId: purchase.bidderId, amount: purchase.price, checked: checkedLogFor)
                {
                case .receipt(let receipt): return .alreadyAccepted(receipt)
                case .inLog: return .lookUpInLog(purchase.bidId)
                case .unknown: return .accept(try state.decideBuyNow(purchase, now: now))
                }
            case .close:
                return .accept(try existing().decideClose(now: now))
            case .cancel(let reason):
                return .accept(try existing().decideCancel(reason: reason, now: now))
            case .settle(let step):
                return .accept(try existing().decideSettlement(step, now: now))
            }
        } catch {
            return .reject(error)
        }
    }

    private func existing() throws(AuctionRejection) -> AuctionState {
        guard let state else { throw .auctionNotFound }
        return state
    }

    private func decideCreate(_ terms: AuctionTerms, now: Timestamp) throws(AuctionRejection) -> [AuctionEvent] {
        guard state == nil else { throw .auctionAlreadyExists }
        guard terms.auctionId == id else { throw .invalidTerms("the auction id does not match") }
        try terms.validate(now: now)
        return [.created(AuctionCreated(terms: terms, at: now))]
    }

    /// Folds one event into the state. Throws when the event cannot follow the current state, which
    /// only a corrupt or foreign log produces; the state is then unchanged.
    public mutating func apply(_ event: AuctionEvent) throws(EventApplicationError) {
        let seq = self.seq + 1
        if let bidId = event.acceptedBidId, case .receipt = ledger.lookup(bidId) {
            throw EventApplicationError(auctionId: id, seq: seq, reason: "bid id \(bidId) accepted twice")
        }
        try AuctionState.advance(&state, with: event, auction: id, seq: seq)
        // In place: the ledger is never shared with a copy of the state, so this costs O(1).
        if let receipt = BidReceipt(accepting: event, seq: seq) { ledger.record(receipt) }
        self.seq = seq
    }

    /// The state after applying `events` in order (a replay of a log, or of a snapshot's tail).
    public mutating func apply(contentsOf events: some Sequence<AuctionEvent>) throws(EventApplicationError) {
        for event in events { try apply(event) }
    }

    /// Keeps `receipt` — read back from the log after a `lookUpInLog` decision — whole again, so
    /// the retried bid is answered with it.
    public mutating func restore(_ receipt: BidReceipt) {
        ledger.restore(receipt)
    }

    /// Rebuilds an auction from its whole log.
    public static func replay(id: AuctionID, events: some Sequence<AuctionEvent>) throws(EventApplicationError)
        -> Auction
    {
        var auction = Auction(id: id)
        try auction.apply(contentsOf: events)
        return auction
    }
}

/// The stored form of a snapshot (JSON in the log): `{id, seq, state: {…, receipts,
/// olderBidFingerprints}}` — the whole receipts of recent bids inside the state, as they were
/// before they moved out of it in memory (so snapshots written by earlier versions, which hold every
/// receipt, load unchanged), and the older bids' fingerprints as one hex string (16 digits each).
extension Auction: Codable {
    private enum CodingKeys: String, CodingKey {
        case id, seq, state
    }

    private enum StateKeys: String, CodingKey {
        case receipts, olderBidFingerprints
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(AuctionID.self, forKey: .id)
        seq = try container.decode(Int64.self, forKey: .seq)
        state = try container.decodeIfPresent(AuctionState.self, forKey: .state)
        if state != nil {
            let nested = try container.nestedContainer(keyedBy: StateKeys.self, forKey: .state)
            let receipts = try nested.decode([BidID: BidReceipt].self, forKey: .receipts)
            let hex = try nested.decodeIfPresent(String.self, forKey: .olderBidFingerprints) ?? ""
            guard let fingerprints = Self.fingerprints(hex: hex) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .olderBidFingerprints, in: nested, debugDescription: "not 16 hex digits per fingerprint")
            }
            ledger = BidLedger(receipts: receipts.values, olderFingerprints: fingerprints)
        } else {
            ledger = BidLedger()
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(seq, forKey: .seq)
        guard let state else {
            try container.encodeNil(forKey: .state)
            return
        }
        let stateEncoder = container.superEncoder(forKey: .state)
        try state.encode(to: stateEncoder)
        var nested = stateEncoder.container(keyedBy: StateKeys.self)
        try nested.encode(
            Dictionary(ledger.recentReceipts.map { ($0.bidId, $0) }, uniquingKeysWith: { first, _ in first }),
            forKey: .receipts)
        let older = ledger.olderFingerprints
        if !older.isEmpty { try nested.encode(Self.hex(older), forKey: .olderBidFingerprints) }
    }

    static func hex(_ fingerprints: [UInt64]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(fingerprints.count * 16)
        for value in fingerprints {
            for shift in stride(from: 60, through: 0, by: -4) {
                bytes.append(digits[Int((value >> UInt64(shift)) & 0xF)])
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func fingerprints(hex: String) -> [UInt64]? {
        let bytes = Array(hex.utf8)
        guard bytes.count % 16 == 0 else { return nil }
        var result: [UInt64] = []
        result.reserveCapacity(bytes.count / 16)
        var value: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
            if index % 16 == 15 {
                result.append(value)
                value = 0
            }
        }
        return result
    }
}

/// An event that cannot follow the state it was applied to: the log is corrupt or not this auction's.
public struct EventApplicationError: Error, Hashable, Sendable, CustomStringConvertible {
    public var auctionId: AuctionID
    public var seq: Int64
    public var reason: String

    public var description: String { "event \(seq) of auction \(auctionId) does not apply: \(reason)" }
}

extension Auction {
    /// A cancel needs a reason of 1 to ``TextLimits/cancelReasonBytes`` bytes (checked again by
    /// the gateway before a cancel crosses the wire).
    public static func validateCancelReason(_ reason: String) throws(AuctionRejection) {
        guard TextLimits.isAcceptable(reason, maximumBytes: TextLimits.cancelReasonBytes) else {
            throw .invalidCommand(
                "a cancel reason of 1 to \(TextLimits.cancelReasonBytes) bytes of UTF-8, no control characters, is required"
            )
        }
    }

    /// What the ledger knows of an earlier acceptance of `bidId`. The same id with other content is
    /// a conflict, never a second bid.
    func previous(bidId: BidID, bidderId: UserID, amount: Money, checked: BidID?) throws(AuctionRejection)
        -> BidLedger.Lookup
    {
        let receipt: BidReceipt
        switch ledger.lookup(bidId) {
        case .unknown: return .unknown
        case .inLog: return checked == bidId ? .unknown : .inLog
        case .receipt(let found): receipt = found
        }
        guard receipt.bidderId == bidderId, receipt.maximum == amount else { throw .bidIdConflict(bidId) }
        return .receipt(receipt)
    }
}

extension AuctionState {

    /// The checks every bid and purchase pass: amount, currency, timing, seller.
    private func checkBiddable(bidderId: UserID, amount: Money, now: Timestamp) throws(AuctionRejection) {
        guard amount.currency == terms.currency else { throw .currencyMismatch(expected: terms.currency) }
        guard amount.minorUnits > 0 else { throw .invalidAmount }
        guard amount.minorUnits <= Money.maximumMinorUnits else {
            throw .amountTooLarge(limitMinorUnits: Money.maximumMinorUnits)
        }
        switch phase(at: now) {
        case .scheduled: throw .notOpenYet(opensAt: terms.opensAt)
        case .open: break
        case .ended, .closed: throw .auctionClosed
        case .cancelled: throw .auctionCancelled
        }
        guard bidderId != terms.sellerId else { throw .sellerCannotBid }
    }

    func decideBid(_ bid: PlaceBid, now: Timestamp) throws(AuctionRejection) -> [AuctionEvent] {
        try checkBiddable(bidderId: bid.bidderId, amount: bid.maximum, now: now)
        let increments = terms.increments
        func plusIncrement(_ amount: Money) -> Money {
            Money(
                minorUnits: amount.minorUnits + increments.increment(at: amount.minorUnits), currency: amount.currency)
        }
        var newPrice: Money
        var newLeader: Leader
        if let leader, leader.bidderId == bid.bidderId {
            // The leader raises their own maximum: the price stays (unless the reserve is now reached).
            guard bid.maximum > leader.maximum else { throw .maximumNotAboveCurrent(currentMaximum: leader.maximum) }
            newPrice = price
            newLeader = Leader(bidderId: bid.bidderId, bidId: bid.bidId, maximum: bid.maximum)
        } else {
            let minimum = minimumNextBid
            guard bid.maximum >= minimum else { throw .belowMinimum(minimum: minimum) }
            if let leader {
                if bid.maximum > leader.maximum {
                    // The challenger takes the lead at one increment over the old leader's maximum.
                    newPrice = min(bid.maximum, plusIncrement(leader.maximum))
                    newLeader = Leader(bidderId: bid.bidderId, bidId: bid.bidId, maximum: bid.maximum)
                } else {
                    // The leader's proxy answers; on equal maxima the earlier bid keeps the lead.
                    newPrice = min(leader.maximum, plusIncrement(bid.maximum))
                    newLeader = leader
                }
            } else {
                newPrice = terms.startingPrice
                newLeader = Leader(bidderId: bid.bidderId, bidId: bid.bidId, maximum: bid.maximum)
            }
        }
        if let reserve = terms.reservePrice, newLeader.maximum >= reserve, newPrice < reserve {
            newPrice = reserve
        }
        var events: [AuctionEvent] = [
            .bidAccepted(
                BidAccepted(
                    bidId: bid.bidId, bidderId: bid.bidderId, maximum: bid.maximum, at: now, price: newPrice,
                    leaderBidId: newLeader.bidId, leaderId: newLeader.bidderId))
        ]
        let extendedEnd = now.advanced(by: terms.extensionWindow)
        if terms.extensionWindow > .zero, extendedEnd > endsAt {
            events.append(.extended(ClosingExtended(endsAt: extendedEnd, byBidId: bid.bidId)))
        }
        return events
    }

    func decideBuyNow(_ purchase: BuyNow, now: Timestamp) throws(AuctionRejection) -> [AuctionEvent] {
        try checkBiddable(bidderId: purchase.bidderId, amount: purchase.price, now: now)
        guard let buyNowPrice = terms.buyNowPrice, buyNowAvailable else { throw .buyNowUnavailable }
        guard purchase.price == buyNowPrice else { throw .buyNowPriceMismatch(buyNowPrice: buyNowPrice) }
        return [
            .boughtNow(BoughtNow(bidId: purchase.bidId, bidderId: purchase.bidderId, price: buyNowPrice, at: now)),
            .closed(
                AuctionClosed(
                    result: .sold(winnerId: purchase.bidderId, bidId: purchase.bidId, price: buyNowPrice), at: now)),
            settlementOpening(buyer: purchase.bidderId, hammer: buyNowPrice, now: now),
        ]
    }

    /// A sold lot's settlement opens in the same batch as its `closed` event: the invoice is due
    /// from the moment of the hammer, and no failover can leave a sold lot without one.
    private func settlementOpening(buyer: UserID, hammer: Money, now: Timestamp) -> AuctionEvent {
        let decision = Settlement(auctionId: terms.auctionId).decide(
            .open(buyerId: buyer, hammer: hammer), fees: terms.fees, now: now)
        guard case .accept(let events) = decision, let opened = events.first else {
            preconditionFailure("a fresh settlement always opens: \(decision)")
        }
        return .settlement(opened)
    }

    func decideClose(now: Timestamp) throws(AuctionRejection) -> [AuctionEvent] {
        switch phase(at: now) {
        case .scheduled, .open: throw .notYetEnded(endsAt: endsAt)
        case .closed: throw .auctionClosed
        case .cancelled: throw .auctionCancelled
        case .ended: break
        }
        guard let leader else { return [.closed(AuctionClosed(result: .unsold(.noBids), at: now))] }
        guard reserveMet else { return [.closed(AuctionClosed(result: .unsold(.reserveNotMet), at: now))] }
        return [
            .closed(
                AuctionClosed(result: .sold(winnerId: leader.bidderId, bidId: leader.bidId, price: price), at: now)),
            settlementOpening(buyer: leader.bidderId, hammer: price, now: now),
        ]
    }

    func decideSettlement(_ step: SettlementCommand, now: Timestamp) throws(AuctionRejection) -> [AuctionEvent] {
        guard case .closed(.sold) = status, let settlement else { throw .settlement(.notOpen) }
        if case .open = step { throw .invalidCommand("a settlement opens when the lot is sold") }
        switch settlement.decide(step, fees: terms.fees, now: now) {
        case .accept(let events): return events.map(AuctionEvent.settlement)
        case .unchanged: return []
        case .reject(let rejection): throw .settlement(rejection)
        }
    }

    func decideCancel(reason: String, now: Timestamp) throws(AuctionRejection) -> [AuctionEvent] {
        try Auction.validateCancelReason(reason)
        switch status {
        case .closed: throw .auctionClosed
        case .cancelled: throw .auctionCancelled
        case .running: return [.cancelled(AuctionCancelled(reason: reason, at: now))]
        }
    }
}
