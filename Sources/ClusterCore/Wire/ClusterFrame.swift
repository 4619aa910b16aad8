public import AuctionCore
import Foundation
public import NIOCore

/// A message between authenticated cluster nodes (after `ClusterHandshake`).
///
/// Binary on the hot path (bids and their answers, membership); only `create`, an admin command,
/// carries its terms as JSON. Bounded: strings ≤ 1 KiB, a frame ≤ `ClusterFrameCoder.maximumFrameLength`.
public enum ClusterFrame: Sendable, Equatable {
    case membership(MembershipMessage)
    /// A command forwarded to the auction's owner, with whom it is run for; `hops` counts forwards
    /// so far; `requestId` is the client request's id (`RequestTrace`), so that one bid can be
    /// followed in the logs of every node it crosses.
    case request(
        id: UInt64, hops: UInt8, auction: AuctionID, command: AuctionCommand, issuer: CommandIssuer,
        requestId: String? = nil)
    case response(id: UInt64, result: Result<CommandAccepted, EngineError>)
    /// Durable events of one auction, in seq order, pushed by its owner.
    case events(auction: AuctionID, events: [StoredEvent])
    /// Asks a node to push the events of every auction it writes (read models and live feeds;
    /// renewed periodically).
    case subscribeToEverything(subscriber: NodeID)
    /// A user's roles or token version changed: drop what you cached about them (revocation takes
    /// effect on every node at once, not when a cache entry expires).
    case userChanged(UserID)

    /// Whether the transport hands this frame to its handler in arrival order, on the connection's
    /// read loop: pushed events are (a feed that saw seq 7 before seq 6 would read the gap from
    /// the store); everything else runs concurrently (a forwarded bid must not wait for another).
    public var isHandledInOrder: Bool {
        if case .events = self { return true }
        return false
    }

    enum Tag: UInt8 {
        case membership = 0x01
        case request = 0x02
        case response = 0x03
        // 0x04 was a subscription to one auction's events: its feeds are served from
        // `subscribeToEverything`, which every node keeps with every live member anyway.
        case events = 0x05
        case subscribeToEverything = 0x06
        case userChanged = 0x07
    }

    public func encode() -> ByteBuffer {
        var buffer = ByteBuffer()
        switch self {
        case .membership(let message):
            buffer.writeInteger(Tag.membership.rawValue)
            MembershipCodec.write(message, to: &buffer)
        case .request(let id, let hops, let auction, let command, let issuer, let requestId):
            buffer.writeInteger(Tag.request.rawValue)
            buffer.writeInteger(id)
            buffer.writeInteger(hops)
            buffer.writeWireString(auction.rawValue)
            WireCodec.write(command, to: &buffer)
            WireCodec.write(issuer, to: &buffer)
            // Last and optional: a frame from a node that sends none ends here.
            if let requestId { buffer.writeWireString(requestId) }
        case .response(let id, let result):
            buffer.writeInteger(Tag.response.rawValue)
            buffer.writeInteger(id)
            WireCodec.write(result, to: &buffer)
        case .events(let auction, let events):
            buffer.writeInteger(Tag.events.rawValue)
            buffer.writeWireString(auction.rawValue)
            let bounded = events.prefix(WireCodec.maximumEventsPerFrame)
            buffer.writeInteger(UInt16(bounded.count))
            for event in bounded { WireCodec.write(event, to: &buffer) }
        case .subscribeToEverything(let subscriber):
            buffer.writeInteger(Tag.subscribeToEverything.rawValue)
            buffer.writeWireString(subscriber.rawValue)
        case .userChanged(let user):
            buffer.writeInteger(Tag.userChanged.rawValue)
            buffer.writeWireString(user.rawValue)
        }
        return buffer
    }

    public static func decode(_ frame: ByteBuffer) throws(WireError) -> ClusterFrame {
        var buffer = frame
        let decoded: ClusterFrame
        let tag: UInt8 = try buffer.readWire()
        switch Tag(rawValue: tag) {
        case .membership:
            decoded = .membership(try MembershipCodec.read(from: &buffer))
        case .request:
            let id: UInt64 = try buffer.readWire()
            let hops: UInt8 = try buffer.readWire()
            let auction = try WireCodec.readIdentifier(AuctionID.self, from: &buffer)
            let command = try WireCodec.readCommand(from: &buffer)
            let issuer = try WireCodec.readIssuer(from: &buffer)
            let requestId: String? =
                buffer.readableBytes > 0 ? try buffer.readWireString(maximumBytes: RequestTrace.maximumLength) : nil
            guard requestId.map(RequestTrace.isValid) ?? true else { throw .invalid("request id") }
            decoded = .request(
                id: id, hops: hops, auction: auction, command: command, issuer: issuer, requestId: requestId)
        case .response:
            let id: UInt64 = try buffer.readWire()
            decoded = .response(id: id, result: try WireCodec.readResult(from: &buffer))
        case .events:
            let auction = try WireCodec.readIdentifier(AuctionID.self, from: &buffer)
            let count = try buffer.readWireCount(maximum: WireCodec.maximumEventsPerFrame, "events")
            var events: [StoredEvent] = []
            for _ in 0..<count { events.append(try WireCodec.readStoredEvent(of: auction, from: &buffer)) }
            decoded = .events(auction: auction, events: events)
        case .subscribeToEverything:
            decoded = .subscribeToEverything(subscriber: try WireCodec.readIdentifier(NodeID.self, from: &buffer))
        case .userChanged:
            decoded = .userChanged(try WireCodec.readIdentifier(UserID.self, from: &buffer))
        case nil:
            throw .unknownTag("cluster frame", tag)
        }
        try buffer.expectFullyRead()
        return decoded
    }
}

/// Binary forms of the engine's commands and answers.
enum WireCodec {
    static let maximumText = TextLimits.wireTextBytes
    static let maximumEventsPerFrame = 1_024

    // MARK: Events

    /// Bids (the hot path) in binary; the rarer kinds in their stored JSON form.
    static func write(_ stored: StoredEvent, to buffer: inout ByteBuffer) {
        buffer.writeInteger(stored.seq)
        buffer.writeInteger(stored.epoch.rawValue)
        if case .bidAccepted(let bid) = stored.event {
            buffer.writeInteger(UInt8(1))
            buffer.writeWireString(bid.bidId.rawValue)
            buffer.writeWireString(bid.bidderId.rawValue)
            write(bid.maximum, to: &buffer)
            buffer.writeInteger(bid.at.millisecondsSinceEpoch)
            write(bid.price, to: &buffer)
            buffer.writeWireString(bid.leaderBidId.rawValue)
            buffer.writeWireString(bid.leaderId.rawValue)
        } else {
            buffer.writeInteger(UInt8(2))
            let (kind, payload) = EventPayload.encode(stored.event)
            buffer.writeWireString(kind)
            buffer.writeInteger(UInt32(payload.utf8.count))
            buffer.writeString(payload)
        }
    }

    static func readStoredEvent(of auction: AuctionID, from buffer: inout ByteBuffer) throws(WireError) -> StoredEvent {
        let seq: Int64 = try buffer.readWire()
        let epoch = Epoch(try buffer.readWire())
        let event: AuctionEvent
        switch try buffer.readWire(UInt8.self) {
        case 1:
            event = .bidAccepted(
                BidAccepted(
                    bidId: try readIdentifier(BidID.self, from: &buffer),
                    bidderId: try readIdentifier(UserID.self, from: &buffer),
                    maximum: try readMoney(from: &buffer), at: try readTimestamp(from: &buffer),
                    price: try readMoney(from: &buffer),
                    leaderBidId: try readIdentifier(BidID.self, from: &buffer),
                    leaderId: try readIdentifier(UserID.self, from: &buffer)))
        case 2:
            let kind = try buffer.readWireString(maximumBytes: 32)
            let length = Int(try buffer.readWire(UInt32.self))
            guard length <= 64 * 1_024 else { throw .outOfBounds("event of \(length) bytes") }
            guard let payload = buffer.readString(length: length) else { throw .truncated }
            do {
                event = try EventPayload.decode(kind: kind, payload: payload)
            } catch {
                throw .invalid("event payload")
            }
        case let tag:
            throw .unknownTag("event", tag)
        }
        return StoredEvent(auction: auction, seq: seq, epoch: epoch, event: event)
    }

    // MARK: Primitives

    static func readIdentifier<Kind>(_: Identifier<Kind>.Type, from buffer: inout ByteBuffer) throws(WireError)
        -> Identifier<Kind>
    {
        let raw = try buffer.readWireString(maximumBytes: Identifier<Kind>.maximumLength)
        guard let id = Identifier<Kind>(rawValue: raw) else { throw .invalid("identifier") }
        return id
    }

    static func write(_ money: Money, to buffer: inout ByteBuffer) {
        buffer.writeInteger(money.minorUnits)
        buffer.writeWireString(money.currency.code)
    }

    static func readMoney(from buffer: inout ByteBuffer) throws(WireError) -> Money {
        let minorUnits: Int64 = try buffer.readWire()
        return Money(minorUnits: minorUnits, currency: try readCurrency(from: &buffer))
    }

    static func readCurrency(from buffer: inout ByteBuffer) throws(WireError) -> Currency {
        guard let currency = Currency(code: try buffer.readWireString(maximumBytes: 3)) else {
            throw .invalid("currency")
        }
        return currency
    }

    static func readTimestamp(from buffer: inout ByteBuffer) throws(WireError) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: try buffer.readWire())
    }

    // MARK: Commands

    static func write(_ command: AuctionCommand, to buffer: inout ByteBuffer) {
        switch command {
        case .placeBid(let bid):
            buffer.writeInteger(UInt8(1))
            buffer.writeWireString(bid.bidId.rawValue)
            buffer.writeWireString(bid.bidderId.rawValue)
            write(bid.maximum, to: &buffer)
        case .buyNow(let purchase):
            buffer.writeInteger(UInt8(2))
            buffer.writeWireString(purchase.bidId.rawValue)
            buffer.writeWireString(purchase.bidderId.rawValue)
            write(purchase.price, to: &buffer)
        case .close:
            buffer.writeInteger(UInt8(3))
        case .cancel(let reason):
            buffer.writeInteger(UInt8(4))
            buffer.writeWireString(TextLimits.truncated(reason, maximumBytes: maximumText))
        case .create(let terms):
            buffer.writeInteger(UInt8(5))
            writeJSON(terms, to: &buffer)
        case .settle(let step):
            buffer.writeInteger(UInt8(6))
            writeJSON(step, to: &buffer)
        }
    }

    /// A rare, structured value as length-prefixed JSON (its `Codable` form).
    static func writeJSON(_ value: some Encodable, to buffer: inout ByteBuffer) {
        let json = (try? JSONEncoder().encode(value)) ?? Data()
        buffer.writeInteger(UInt32(json.count))
        buffer.writeBytes(json)
    }

    static func readJSON<Value: Decodable>(_: Value.Type, _ what: String, from buffer: inout ByteBuffer)
        throws(WireError) -> Value
    {
        let length = Int(try buffer.readWire(UInt32.self))
        guard length <= 64 * 1_024 else { throw .outOfBounds("\(what) of \(length) bytes") }
        guard let bytes = buffer.readBytes(length: length) else { throw .truncated }
        guard let value = try? JSONDecoder().decode(Value.self, from: Data(bytes)) else { throw .invalid(what) }
        return value
    }

    static func readCommand(from buffer: inout ByteBuffer) throws(WireError) -> AuctionCommand {
        switch try buffer.readWire(UInt8.self) {
        case 1:
            return .placeBid(
                PlaceBid(
                    bidId: try readIdentifier(BidID.self, from: &buffer),
                    bidderId: try readIdentifier(UserID.self, from: &buffer), maximum: try readMoney(from: &buffer)))
        case 2:
            return .buyNow(
                BuyNow(
                    bidId: try readIdentifier(BidID.self, from: &buffer),
                    bidderId: try readIdentifier(UserID.self, from: &buffer), price: try readMoney(from: &buffer)))
        case 3:
            return .close
        case 4:
            return .cancel(reason: try buffer.readWireString(maximumBytes: maximumText))
        case 5:
            return .create(try readJSON(AuctionTerms.self, "auction terms", from: &buffer))
        case 6:
            return .settle(try readJSON(SettlementCommand.self, "settlement command", from: &buffer))
        case let tag:
            throw .unknownTag("command", tag)
        }
    }

    // MARK: Answers

    static func write(_ result: Result<CommandAccepted, EngineError>, to buffer: inout ByteBuffer) {
        switch result {
        case .success(let accepted):
            buffer.writeInteger(UInt8(0))
            buffer.writeInteger(accepted.seq)
            buffer.writeWireBool(accepted.replayed)
            buffer.writeWireOptional(accepted.receipt) { write($1, to: &$0) }
            write(accepted.summary, to: &buffer)
        case .failure(let error):
            buffer.writeInteger(UInt8(1))
            write(error, to: &buffer)
        }
    }

    static func readResult(from buffer: inout ByteBuffer) throws(WireError) -> Result<CommandAccepted, EngineError> {
        switch try buffer.readWire(UInt8.self) {
        case 0:
            let seq: Int64 = try buffer.readWire()
            let replayed = try buffer.readWireBool()
            let receipt = try buffer.readWireOptional { (buffer: inout ByteBuffer) throws(WireError) in
                try readReceipt(from: &buffer)
            }
            let summary = try readSummary(from: &buffer)
            return .success(CommandAccepted(seq: seq, receipt: receipt, summary: summary, replayed: replayed))
        case 1:
            return .failure(try readEngineError(from: &buffer))
        case let tag:
            throw .unknownTag("result", tag)
        }
    }

    static func write(_ receipt: BidReceipt, to buffer: inout ByteBuffer) {
        buffer.writeWireString(receipt.bidId.rawValue)
        buffer.writeWireString(receipt.bidderId.rawValue)
        write(receipt.maximum, to: &buffer)
        buffer.writeInteger(receipt.seq)
        buffer.writeInteger(receipt.at.millisecondsSinceEpoch)
        buffer.writeWireString(receipt.outcome.rawValue)
        write(receipt.price, to: &buffer)
    }

    static func readReceipt(from buffer: inout ByteBuffer) throws(WireError) -> BidReceipt {
        let bidId = try readIdentifier(BidID.self, from: &buffer)
        let bidderId = try readIdentifier(UserID.self, from: &buffer)
        let maximum = try readMoney(from: &buffer)
        let seq: Int64 = try buffer.readWire()
        let at = try readTimestamp(from: &buffer)
        guard let outcome = BidReceipt.Outcome(rawValue: try buffer.readWireString(maximumBytes: 32)) else {
            throw .invalid("receipt outcome")
        }
        let price = try readMoney(from: &buffer)
        return BidReceipt(
            bidId: bidId, bidderId: bidderId, maximum: maximum, seq: seq, at: at, outcome: outcome, price: price)
    }

    static func write(_ summary: AuctionSummary, to buffer: inout ByteBuffer) {
        buffer.writeWireString(summary.auctionId.rawValue)
        buffer.writeInteger(summary.seq)
        buffer.writeWireString(summary.sellerId.rawValue)
        buffer.writeWireOptional(summary.saleId) { $0.writeWireString($1.rawValue) }
        buffer.writeWireString(TextLimits.truncated(summary.title, maximumBytes: maximumText))
        write(summary.price, to: &buffer)
        write(summary.minimumNextBid, to: &buffer)
        buffer.writeWireOptional(summary.leaderId) { $0.writeWireString($1.rawValue) }
        buffer.writeInteger(Int64(summary.bidCount))
        buffer.writeInteger(summary.opensAt.millisecondsSinceEpoch)
        buffer.writeInteger(summary.endsAt.millisecondsSinceEpoch)
        buffer.writeWireBool(summary.hasReserve)
        buffer.writeWireBool(summary.reserveMet)
        buffer.writeWireOptional(summary.buyNowPrice) { write($1, to: &$0) }
        switch summary.status {
        case .running:
            buffer.writeInteger(UInt8(0))
        case .closed(.sold(let winner, let bidId, let price)):
            buffer.writeInteger(UInt8(1))
            buffer.writeWireString(winner.rawValue)
            buffer.writeWireString(bidId.rawValue)
            write(price, to: &buffer)
        case .closed(.unsold(let reason)):
            buffer.writeInteger(UInt8(2))
            buffer.writeWireString(reason.rawValue)
        case .cancelled(let reason):
            buffer.writeInteger(UInt8(3))
            buffer.writeWireString(TextLimits.truncated(reason, maximumBytes: maximumText))
        }
    }

    static func readSummary(from buffer: inout ByteBuffer) throws(WireError) -> AuctionSummary {
        let auctionId = try readIdentifier(AuctionID.self, from: &buffer)
        let seq: Int64 = try buffer.readWire()
        let sellerId = try readIdentifier(UserID.self, from: &buffer)
        let saleId = try buffer.readWireOptional { (buffer: inout ByteBuffer) throws(WireError) in
            try readIdentifier(SaleID.self, from: &buffer)
        }
        let title = try buffer.readWireString(maximumBytes: maximumText)
        let price = try readMoney(from: &buffer)
        let minimumNextBid = try readMoney(from: &buffer)
        let leaderId = try buffer.readWireOptional { (buffer: inout ByteBuffer) throws(WireError) in
            try readIdentifier(UserID.self, from: &buffer)
        }
        let bidCount = Int(try buffer.readWire(Int64.self))
        let opensAt = try readTimestamp(from: &buffer)
        let endsAt = try readTimestamp(from: &buffer)
        let hasReserve = try buffer.readWireBool()
        let reserveMet = try buffer.readWireBool()
        let buyNowPrice = try buffer.readWireOptional { (buffer: inout ByteBuffer) throws(WireError) in
            try readMoney(from: &buffer)
        }
        let status: AuctionState.Status
        switch try buffer.readWire(UInt8.self) {
        case 0:
            status = .running
        case 1:
            status = .closed(
                .sold(
                    winnerId: try readIdentifier(UserID.self, from: &buffer),
                    bidId: try readIdentifier(BidID.self, from: &buffer),
                    price: try readMoney(from: &buffer)))
        case 2:
            guard let reason = UnsoldReason(rawValue: try buffer.readWireString(maximumBytes: 32)) else {
                throw .invalid("unsold reason")
            }
            status = .closed(.unsold(reason))
        case 3:
            status = .cancelled(reason: try buffer.readWireString(maximumBytes: maximumText))
        case let tag:
            throw .unknownTag("auction status", tag)
        }
        return AuctionSummary(
            auctionId: auctionId, seq: seq, sellerId: sellerId, saleId: saleId, title: title, price: price,
            minimumNextBid: minimumNextBid, leaderId: leaderId, bidCount: bidCount, opensAt: opensAt, endsAt: endsAt,
            hasReserve: hasReserve, reserveMet: reserveMet, buyNowPrice: buyNowPrice, status: status)
    }

    static func write(_ issuer: CommandIssuer, to buffer: inout ByteBuffer) {
        switch issuer {
        case .node:
            buffer.writeInteger(UInt8(0))
        case .user(let user, let tokenVersion):
            buffer.writeInteger(UInt8(1))
            buffer.writeWireString(user.rawValue)
            buffer.writeInteger(tokenVersion)
        }
    }

    static func readIssuer(from buffer: inout ByteBuffer) throws(WireError) -> CommandIssuer {
        switch try buffer.readWire(UInt8.self) {
        case 0: return .node
        case 1:
            let user = try readIdentifier(UserID.self, from: &buffer)
            return .user(user, tokenVersion: try buffer.readWire())
        case let tag: throw .unknownTag("command issuer", tag)
        }
    }

    static func write(_ error: EngineError, to buffer: inout ByteBuffer) {
        switch error {
        case .rejected(let rejection):
            buffer.writeInteger(UInt8(1))
            write(rejection, to: &buffer)
        case .notOwner(let shard):
            buffer.writeInteger(UInt8(2))
            buffer.writeInteger(shard.rawValue)
        case .storeUnavailable(let detail):
            buffer.writeInteger(UInt8(3))
            buffer.writeWireString(TextLimits.truncated(detail, maximumBytes: maximumText))
        case .stopped:
            buffer.writeInteger(UInt8(4))
        case .ownerUnavailable(let detail):
            buffer.writeInteger(UInt8(5))
            buffer.writeWireString(TextLimits.truncated(detail, maximumBytes: maximumText))
        case .refusedByOwner(let code, let detail):
            buffer.writeInteger(UInt8(6))
            buffer.writeWireString(TextLimits.truncated(code, maximumBytes: maximumText))
            buffer.writeWireString(TextLimits.truncated(detail, maximumBytes: maximumText))
        }
    }

    static func readEngineError(from buffer: inout ByteBuffer) throws(WireError) -> EngineError {
        switch try buffer.readWire(UInt8.self) {
        case 1: return .rejected(try readRejection(from: &buffer))
        case 2: return .notOwner(ShardID(try buffer.readWire()))
        case 3: return .storeUnavailable(try buffer.readWireString(maximumBytes: maximumText))
        case 4: return .stopped
        case 5: return .ownerUnavailable(try buffer.readWireString(maximumBytes: maximumText))
        case 6:
            let code = try buffer.readWireString(maximumBytes: maximumText)
            return .refusedByOwner(code: code, detail: try buffer.readWireString(maximumBytes: maximumText))
        case let tag: throw .unknownTag("engine error", tag)
        }
    }

    static func write(_ rejection: AuctionRejection, to buffer: inout ByteBuffer) {
        if case .settlement(let refusal) = rejection {
            // Settlement codes overlap the auction's (`currency_mismatch`): a marker of its own.
            buffer.writeWireString("settlement")
            writeJSON(refusal, to: &buffer)
            return
        }
        buffer.writeWireString(rejection.code)
        switch rejection {
        case .settlement:
            break
        case .auctionNotFound, .auctionAlreadyExists, .invalidAmount, .auctionClosed, .auctionCancelled,
            .sellerCannotBid, .buyNowUnavailable:
            break
        case .invalidTerms(let text), .invalidCommand(let text):
            buffer.writeWireString(TextLimits.truncated(text, maximumBytes: maximumText))
        case .amountTooLarge(let limit):
            buffer.writeInteger(limit)
        case .currencyMismatch(let expected):
            buffer.writeWireString(expected.code)
        case .notOpenYet(let at), .notYetEnded(let at):
            buffer.writeInteger(at.millisecondsSinceEpoch)
        case .belowMinimum(let money), .maximumNotAboveCurrent(let money), .buyNowPriceMismatch(let money):
            write(money, to: &buffer)
        case .bidIdConflict(let bidId):
            buffer.writeWireString(bidId.rawValue)
        }
    }

    static func readRejection(from buffer: inout ByteBuffer) throws(WireError) -> AuctionRejection {
        let code = try buffer.readWireString(maximumBytes: 64)
        switch code {
        case "auction_not_found": return .auctionNotFound
        case "auction_already_exists": return .auctionAlreadyExists
        case "invalid_amount": return .invalidAmount
        case "auction_closed": return .auctionClosed
        case "auction_cancelled": return .auctionCancelled
        case "seller_cannot_bid": return .sellerCannotBid
        case "buy_now_unavailable": return .buyNowUnavailable
        case "invalid_terms": return .invalidTerms(try buffer.readWireString(maximumBytes: maximumText))
        case "invalid_command": return .invalidCommand(try buffer.readWireString(maximumBytes: maximumText))
        case "amount_too_large": return .amountTooLarge(limitMinorUnits: try buffer.readWire())
        case "currency_mismatch": return .currencyMismatch(expected: try readCurrency(from: &buffer))
        case "auction_not_open": return .notOpenYet(opensAt: try readTimestamp(from: &buffer))
        case "auction_not_ended": return .notYetEnded(endsAt: try readTimestamp(from: &buffer))
        case "below_minimum": return .belowMinimum(minimum: try readMoney(from: &buffer))
        case "maximum_not_above_current": return .maximumNotAboveCurrent(currentMaximum: try readMoney(from: &buffer))
        case "buy_now_price_mismatch": return .buyNowPriceMismatch(buyNowPrice: try readMoney(from: &buffer))
        case "bid_id_conflict": return .bidIdConflict(try readIdentifier(BidID.self, from: &buffer))
        case "settlement":
            return .settlement(try readJSON(SettlementRejection.self, "settlement refusal", from: &buffer))
        default: throw .invalid("rejection code \(code)")
        }
    }
}
