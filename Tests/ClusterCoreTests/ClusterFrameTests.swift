import AuctionCore
import ClusterCore
import NIOCore
import NIOTestUtils
import PropertyBased
import TestSupport
import Testing

/// The one wire codec of cluster frames: every kind of frame comes back as it was sent, a cut or
/// garbled frame is refused without a crash, and the framing survives any split of the bytes.
@Suite struct ClusterFrameTests {
    static let opens = Timestamp(millisecondsSinceEpoch: 1_000_000)

    /// Frames as nodes send them, from a random auction run with the real rules: the commands
    /// forwarded, the answers (acceptances with their receipts and summaries, rejections, the
    /// engine's other errors), the events pushed, and the small control frames.
    static func frames(seed: UInt64, steps: Int) -> [ClusterFrame] {
        var random = SeededRandom(seed: seed)
        func below(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        let id = AuctionID(rawValue: "lot-\(below(1_000))")!
        let currency = [Currency.eur, .usd, .jpy, .bhd][below(4)]
        let starting = Int64(1 + below(10_000))
        let terms = AuctionTerms(
            auctionId: id, sellerId: UserID(rawValue: "seller-\(below(9))")!, title: "Lot «\(below(99))» — étude",
            startingPrice: Money(minorUnits: starting, currency: currency),
            reservePrice: below(2) == 0 ? nil : Money(minorUnits: starting * 3, currency: currency),
            buyNowPrice: below(3) == 0 ? Money(minorUnits: starting * 50, currency: currency) : nil,
            opensAt: opens, closesAt: opens.advanced(by: .seconds(3_600)), extensionWindow: .seconds(Int64(below(300))))
        var auction = Auction(id: id)
        var frames: [ClusterFrame] = []
        var seq: Int64 = 0
        var requestId: UInt64 = 0
        var commands: [AuctionCommand] = [.create(terms)]
        for step in 0..<steps {
            let bidder = UserID(rawValue: "bidder-\(below(5))")!
            let amount = Money(minorUnits: starting + Int64(below(100_000)), currency: currency)
            switch below(10) {
            case 0:
                commands.append(.buyNow(BuyNow(bidId: BidID(rawValue: "b\(step)")!, bidderId: bidder, price: amount)))
            case 1: commands.append(.cancel(reason: "withdrawn by the consignor, step \(step)"))
            case 2: commands.append(.close)
            default:
                commands.append(
                    .placeBid(PlaceBid(bidId: BidID(rawValue: "b\(step)")!, bidderId: bidder, maximum: amount)))
            }
        }
        for (index, command) in commands.enumerated() {
            requestId += 1
            let issuer: CommandIssuer =
                below(2) == 0 ? .node : .user(UserID(rawValue: "bidder-\(below(5))")!, tokenVersion: Int64(below(9)))
            frames.append(
                .request(
                    id: requestId, hops: UInt8(below(3)), auction: id, command: command, issuer: issuer,
                    requestId: below(2) == 0 ? nil : "req-\(index):\(below(999))"))
            let now = opens.advanced(by: .seconds(Int64(index * 7)))
            switch auction.decide(command, now: now) {
            case .accept(let events):
                try! auction.apply(contentsOf: events)
                let stored = events.map { event -> StoredEvent in
                    seq += 1
                    return StoredEvent(auction: id, seq: seq, epoch: Epoch(Int64(1 + below(5))), event: event)
                }
                frames.append(.events(auction: id, events: stored))
                let receipt = stored.compactMap { BidReceipt(accepting: $0.event, seq: $0.seq) }.last
                frames.append(
                    .response(
                        id: requestId,
                        result: .success(
                            CommandAccepted(
                                seq: auction.seq, receipt: receipt, summary: auction.summary!, replayed: false)
                        )))
            case .alreadyAccepted(let receipt):
                frames.append(
                    .response(
                        id: requestId,
                        result: .success(
                            CommandAccepted(
                                seq: auction.seq, receipt: receipt, summary: auction.summary!, replayed: true))))
            case .alreadyCreated:
                frames.append(
                    .response(
                        id: requestId,
                        result: .success(
                            CommandAccepted(seq: auction.seq, receipt: nil, summary: auction.summary!, replayed: true))))
            case .reject(let rejection):
                frames.append(.response(id: requestId, result: .failure(.rejected(rejection))))
            case .lookUpInLog:
                break
            }
        }
        let errors: [EngineError] = [
            .notOwner(ShardID(Int32(below(1_024)))), .storeUnavailable("connection reset"), .stopped,
            .ownerUnavailable("no answer from 10.0.0.2:7000 in time"),
            .refusedByOwner(code: "token_revoked", detail: "This token was revoked."),
        ]
        frames += errors.map { .response(id: UInt64(below(1_000)), result: .failure($0)) }
        frames.append(.subscribeToEverything(subscriber: NodeID(rawValue: "node-\(below(9))")!))
        frames.append(.userChanged(UserID(rawValue: "bidder-\(below(5))")!))
        return frames
    }

    @Test func everyFrame_comesBackAsItWasSent() async {
        await offThePool {
            await propertyCheck(count: 300, input: zip(Gen.uint64(in: 0...UInt64.max), Gen.int(in: 1...40))) {
                seed, steps in
                for frame in Self.frames(seed: seed, steps: steps) {
                    let decoded = try ClusterFrame.decode(frame.encode())
                    #expect(decoded == frame, "\(frame)")
                }
            }
            await propertyCheck(count: 300, input: MembershipCodecTests.message) { message in
                let decoded = try ClusterFrame.decode(ClusterFrame.membership(message).encode())
                #expect(decoded == .membership(message))
            }
        }
    }

    @Test func everyTruncation_andRandomBytes_areRefusedWithoutCrashing() async throws {
        for frame in Self.frames(seed: 7, steps: 12) {
            let bytes = frame.encode()
            // A request's request id is optional and last: cut just before it, the frame is the
            // same request without one (what a node that sends none sends). Any other cut is refused.
            var withoutTrace: ClusterFrame?
            if case .request(let id, let hops, let auction, let command, let issuer, .some) = frame {
                withoutTrace = .request(id: id, hops: hops, auction: auction, command: command, issuer: issuer)
            }
            for length in 0..<bytes.readableBytes {
                let cut = bytes.getSlice(at: 0, length: length)!
                if let withoutTrace, length == withoutTrace.encode().readableBytes {
                    #expect(try ClusterFrame.decode(cut) == withoutTrace)
                    continue
                }
                #expect(throws: WireError.self, "\(frame) cut at \(length)") { _ = try ClusterFrame.decode(cut) }
            }
            var longer = bytes
            longer.writeInteger(UInt8(0))
            if case .request = frame {
                // A request may end with an optional request id: one byte more is not one.
            } else {
                #expect(throws: WireError.self, "\(frame) with a byte more") { _ = try ClusterFrame.decode(longer) }
            }
        }
        await offThePool {
            await propertyCheck(count: 3_000, input: Gen.uint8(in: 0...255).array(of: 0...400)) { bytes in
                _ = try? ClusterFrame.decode(ByteBuffer(bytes: bytes))
            }
        }
    }

    /// NIO's own check of a decoder: every frame comes out whatever the chunks the bytes arrive in,
    /// and nothing is left over or made up.
    @Test func theFraming_passesNIOsDecoderVerifier() throws {
        let frames = Self.frames(seed: 11, steps: 20).map { $0.encode() }
        let pairs = frames.map { frame -> (ByteBuffer, [ByteBuffer]) in
            var wire = ByteBuffer()
            try! ClusterFrameCoder().encode(data: frame, out: &wire)
            return (wire, [frame])
        }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { ClusterFrameCoder() }
    }
}
