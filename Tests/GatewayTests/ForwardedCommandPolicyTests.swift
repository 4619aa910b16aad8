import AuctionCore
import AuctionRuntime
import Storage
import TestSupport
import Testing

@testable import Gateway

/// The owner's second look at a forwarded command (`ForwardedCommandPolicy`): a node is trusted with
/// a node's work only; a user's command must come for a user who exists, whose token version is
/// current, who has the role and is not blocked, and in whose name it is.
@Suite struct ForwardedCommandPolicyTests {
    @Test func userCommands_needTheUser_theRole_andTheirOwnName() async throws {
        try await withSQLiteStore { store, _ in
            func user(_ id: String, _ roles: [String]) async throws -> UserID {
                try await store.createUser(
                    StoredUser(
                        id: UserID(rawValue: id)!, username: id, passwordHash: "-", roles: roles,
                        createdAt: Timestamp(millisecondsSinceEpoch: 0)))
                return UserID(rawValue: id)!
            }
            let alice = try await user("alice", ["bidder"])
            let sid = try await user("sid", ["seller"])
            let root = try await user("root", ["admin"])
            let policy = ForwardedCommandPolicy(
                directory: UserDirectory(users: store, maximumAge: .seconds(10)), users: store)
            let lot = AuctionID(rawValue: "lot-p")!
            let euros = { (cents: Int64) in Money(minorUnits: cents, currency: .eur) }
            let bid = { (bidder: UserID) in
                AuctionCommand.placeBid(PlaceBid(bidId: BidID(rawValue: "b")!, bidderId: bidder, maximum: euros(2_000)))
            }
            let now = Timestamp(millisecondsSinceEpoch: 1_000_000)
            let terms = { (seller: UserID) in
                AuctionCommand.create(
                    AuctionTerms(
                        auctionId: lot, sellerId: seller, title: "Lot", startingPrice: euros(1_000), opensAt: now,
                        closesAt: now.advanced(by: .seconds(60)), extensionWindow: .zero))
            }
            func code(_ issuer: CommandIssuer, _ command: AuctionCommand) async -> String? {
                await policy.check(issuer, command)?.code
            }
            let asAlice = CommandIssuer.user(alice, tokenVersion: 0)
            #expect(await code(asAlice, bid(alice)) == nil)
            #expect(await code(asAlice, bid(sid)) == "not_your_command")
            #expect(await code(.user(alice, tokenVersion: 1), bid(alice)) == "token_revoked")
            #expect(await code(.user(UserID(rawValue: "ghost")!, tokenVersion: 0), bid(UserID(rawValue: "ghost")!)) == "token_revoked")
            #expect(await code(.user(sid, tokenVersion: 0), bid(sid)) == "forbidden")
            #expect(await code(.user(sid, tokenVersion: 0), terms(sid)) == nil)
            #expect(await code(.user(sid, tokenVersion: 0), terms(alice)) == "not_your_command")
            #expect(await code(asAlice, .cancel(reason: "mine")) == "forbidden")
            #expect(await code(.user(root, tokenVersion: 0), .cancel(reason: "withdrawn")) == nil)
            #expect(await code(asAlice, .close) == "not_your_command")
            #expect(await code(asAlice, .settle(.startAuthorization)) == "not_your_command")
            #expect(
                await code(asAlice, .settle(.choosePaymentMethod(buyerId: sid, method: PaymentMethodID(rawValue: "pm_card_visa")!)))
                    == "not_your_command")
            #expect(await code(asAlice, .settle(.startRefund(amount: euros(100)))) == "forbidden")
            #expect(await code(.user(root, tokenVersion: 0), .settle(.startRefund(amount: euros(100)))) == nil)

            // A role change this node's cache has not heard of: the newer token is checked against
            // the store, not refused on the cached version.
            _ = await policy.check(asAlice, bid(alice))
            try await store.setRoles(["bidder"], of: alice)
            #expect(await code(.user(alice, tokenVersion: 1), bid(alice)) == nil, "version 1 is current in the store")
            #expect(await code(.user(alice, tokenVersion: 0), bid(alice)) == "token_revoked")
            let asAliceNow = CommandIssuer.user(alice, tokenVersion: 1)

            // Blocked after a default: no bid, no second chance taken (declining is still allowed).
            _ = try await store.blockFromBidding(alice, defaultedOn: lot, at: now)
            let fresh = ForwardedCommandPolicy(
                directory: UserDirectory(users: store, maximumAge: .seconds(10)), users: store)
            #expect(await fresh.check(asAliceNow, bid(alice))?.code == "bidding_blocked")
            #expect(await fresh.check(asAliceNow, .settle(.answerSecondChance(bidderId: alice, accept: true)))?.code == "bidding_blocked")
            #expect(await fresh.check(asAliceNow, .settle(.answerSecondChance(bidderId: alice, accept: false))) == nil)
        }
    }

    @Test func aNode_isTrustedWithANodesWorkOnly() async throws {
        try await withSQLiteStore { store, _ in
            let alice = UserID(rawValue: "alice")!
            try await store.createUser(
                StoredUser(
                    id: alice, username: "alice", passwordHash: "-", roles: ["bidder"],
                    createdAt: Timestamp(millisecondsSinceEpoch: 0)))
            let visa = PaymentMethodID(rawValue: "pm_card_visa")!
            try await store.savePaymentMethod(
                SavedPaymentMethod(id: visa, brand: "visa", last4: "4242", savedAt: Timestamp(millisecondsSinceEpoch: 1)),
                for: alice)
            let policy = ForwardedCommandPolicy(
                directory: UserDirectory(users: store, maximumAge: .seconds(10)), users: store)
            let euros = Money(minorUnits: 2_000, currency: .eur)
            #expect(await policy.check(.node, .close) == nil)
            #expect(await policy.check(.node, .settle(.startCapture)) == nil)
            #expect(await policy.check(.node, .settle(.declareDefault)) == nil)
            #expect(await policy.check(.node, .settle(.choosePaymentMethod(buyerId: alice, method: visa))) == nil)
            let notSaved = PaymentMethodID(rawValue: "pm_card_amex")!
            #expect(
                await policy.check(.node, .settle(.choosePaymentMethod(buyerId: alice, method: notSaved)))?.code
                    == "not_your_command")
            let bid = PlaceBid(bidId: BidID(rawValue: "b")!, bidderId: alice, maximum: euros)
            #expect(await policy.check(.node, .placeBid(bid))?.code == "not_your_command")
            #expect(await policy.check(.node, .cancel(reason: "x"))?.code == "not_your_command")
            #expect(await policy.check(.node, .settle(.startRefund(amount: euros)))?.code == "not_your_command")
            #expect(
                await policy.check(.node, .settle(.answerSecondChance(bidderId: alice, accept: true)))?.code
                    == "not_your_command")
        }
    }
}
