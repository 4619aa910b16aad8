import AuctionCore
import ClusterCore
import Foundation
import Node
import Storage
import Synchronization
import TestSupport
import Testing

/// Pushed events reach the receiving node in the order the owner sent them, even when handling
/// one batch takes a while: handled concurrently, a later batch overtook an earlier one, and the
/// node's live feeds then read the "gap" from the store — a delay for every watcher.
@Suite struct TransportOrderTests {
    @Test func pushedEvents_areHandledInArrivalOrder_forwardedCommandsConcurrently() async throws {
        let receiverID = NodeID(rawValue: "order-receiver")!
        let senderID = NodeID(rawValue: "order-sender")!
        let secret = ClusterSecret("transport order test secret")!
        let receiver = try ClusterTransport(
            node: receiverID, secret: secret, tls: TestCertificates.tls(for: receiverID),
            logger: .init(label: "receiver"))
        let sender = try ClusterTransport(
            node: senderID, secret: secret, tls: TestCertificates.tls(for: senderID), logger: .init(label: "sender"))
        let seen = Mutex<[Int64]>([])
        let requests = Mutex<[UInt64]>([])
        let linkUp = Mutex(false)
        let warmUpAuction = AuctionID(rawValue: "warm-up-lot")!
        receiver.onFrame { frame, _, _ in
            switch frame {
            case .events(let auction, _) where auction == warmUpAuction:
                linkUp.withLock { $0 = true }
            case .events(_, let events):
                // The first batch is slow to handle; the later ones must still come after it.
                if events.first?.seq == 1 { try? await Task.sleep(for: .milliseconds(300)) }
                seen.withLock { $0.append(contentsOf: events.map(\.seq)) }
            case .request(let id, _, _, _, _, _):
                // A slow forwarded command holds up nothing behind it.
                if id == 1 { try? await Task.sleep(for: .seconds(60)) }
                requests.withLock { $0.append(id) }
            default:
                break
            }
        }
        let port = Mutex<Int?>(nil)
        let serveFailure = Mutex<String?>(nil)
        let server = Task {
            do {
                try await receiver.serve(host: "127.0.0.1", port: 0) { bound in port.withLock { $0 = bound } }
            } catch {
                serveFailure.withLock { $0 = "\(error)" }
            }
        }
        defer {
            server.cancel()
            sender.shutdown()
        }
        // Generous: under the whole suite this process's threads can be busy elsewhere for a while.
        try await eventually("the receiver listens", timeout: .seconds(120)) {
            port.withLock { $0 } != nil || serveFailure.withLock { $0 } != nil
        }
        if let failure = serveFailure.withLock({ $0 }) {
            Issue.record("the receiver could not listen: \(failure)")
            return
        }
        let address = NodeAddress(host: "127.0.0.1", port: port.withLock { $0 }!)
        let auction = AuctionID(rawValue: "order-lot")!
        let now = Timestamp(millisecondsSinceEpoch: 1_000)
        let terms = AuctionTerms(
            auctionId: auction, sellerId: UserID(rawValue: "seller")!, title: "Lot",
            startingPrice: Money(minorUnits: 500, currency: .eur), opensAt: now,
            closesAt: now.advanced(by: .seconds(600)))
        var state = Auction(id: auction)
        guard case .accept(let created) = state.decide(.create(terms), now: now) else {
            Issue.record("create refused")
            return
        }
        try state.apply(contentsOf: created)
        let event = StoredEvent(auction: auction, seq: 1, epoch: Epoch(1), event: created[0])

        // Delivery is best effort: frames sent while the connection is still being made go down
        // with it if it fails (a handshake past its deadline on a machine busy with the whole
        // suite). The order under test is on one established connection, so establish it first.
        try await eventually("the sender's link is up", timeout: .seconds(120), every: .milliseconds(200)) {
            var warmUp = event
            warmUp.auction = warmUpAuction
            sender.send(.events(auction: warmUpAuction, events: [warmUp]), to: address)
            return linkUp.withLock { $0 }
        }
        let command = AuctionCommand.close
        sender.send(.request(id: 1, hops: 1, auction: auction, command: command, issuer: .node), to: address)
        for seq in Int64(1)...20 {
            var copy = event
            copy.seq = seq
            sender.send(.events(auction: auction, events: [copy]), to: address)
        }
        sender.send(.request(id: 2, hops: 1, auction: auction, command: command, issuer: .node), to: address)

        try await eventually("every batch arrives") { seen.withLock { $0.count } == 20 }
        #expect(seen.withLock { $0 } == Array(1...20))
        try await eventually("the second request is handled while the first still waits") {
            requests.withLock { $0 } == [2]
        }
    }
}
