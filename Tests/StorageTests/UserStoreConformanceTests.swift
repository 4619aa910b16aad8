import AuctionCore
import Storage
import Testing

@Suite struct UserStoreConformanceTests {
    static func user(_ name: String, id: String? = nil) -> StoredUser {
        StoredUser(
            id: UserID(rawValue: id ?? "u-\(name)")!, username: name, passwordHash: "$2b$04$hash-of-\(name)",
            roles: ["bidder"], createdAt: Timestamp(millisecondsSinceEpoch: 1_000))
    }

    /// Paddles are numbered per scope from 101, the same through every store handle, and a bidder
    /// asking on two nodes at once gets one paddle, not two.
    @Test(arguments: Backend.allCases)
    func paddles_areAssignedOncePerScope_inOrder(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let (ann, ben) = (UserID(rawValue: "u-ann")!, UserID(rawValue: "u-ben")!)
            #expect(try await store.paddle(of: ann, in: "sale:evening") == 101)
            #expect(try await other.paddle(of: ann, in: "sale:evening") == 101)
            #expect(try await other.paddle(of: ben, in: "sale:evening") == 102)
            #expect(try await store.paddle(of: ben, in: "lot:a-1") == 101)
            #expect(try await other.paddles(of: ben) == ["sale:evening": 102, "lot:a-1": 101])
            #expect(
                try await other.paddles(in: ["sale:evening", "lot:a-1", "lot:none"])
                    == ["sale:evening": [ann: 101, ben: 102], "lot:a-1": [ben: 101]])
            let bidders = (0..<20).map { UserID(rawValue: "u-\($0)")! }
            let answers = try await withThrowingTaskGroup(of: (UserID, Int).self) { group in
                for bidder in bidders {
                    for handle in [store, other] as [any UserStore] {
                        group.addTask { (bidder, try await handle.paddle(of: bidder, in: "sale:rush")) }
                    }
                }
                return try await group.reduce(into: [UserID: Set<Int>]()) { $0[$1.0, default: []].insert($1.1) }
            }
            #expect(answers.values.allSatisfy { $0.count == 1 }, "one paddle per bidder")
            let numbers = answers.values.compactMap(\.first)
            #expect(Set(numbers).count == bidders.count, "no paddle shared")
            #expect(try await store.paddles(in: ["sale:rush"]) == ["sale:rush": answers.mapValues { $0.first! }])
        }
    }

    @Test(arguments: Backend.allCases)
    func createdUsers_areFoundByNameAndId(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            try await store.createUser(Self.user("alice"))
            let byName = try await other.user(named: "alice")
            let byId = try await other.user(id: UserID(rawValue: "u-alice")!)
            #expect(byName == Self.user("alice"))
            #expect(byId == Self.user("alice"))
            let nobody = try await store.user(named: "bob")
            #expect(nobody == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func usernames_areUnique(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            try await store.createUser(Self.user("alice"))
            await #expect(throws: UserStoreError.usernameTaken) {
                try await store.createUser(Self.user("alice", id: "another-id"))
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func roles_canBeReplaced_onlyForKnownUsers(_ backend: Backend) async throws {
        try await withStore(backend) { store, _, _ in
            try await store.createUser(Self.user("carol"))
            try await store.setRoles(["bidder", "seller"], of: UserID(rawValue: "u-carol")!)
            let carol = try await store.user(named: "carol")
            #expect(carol?.roles == ["bidder", "seller"])
            await #expect(throws: UserStoreError.unknownUser) {
                try await store.setRoles(["admin"], of: UserID(rawValue: "nobody")!)
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func theTokenVersion_risesWithEveryRoleChangeAndRevocation(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            try await store.createUser(Self.user("dora"))
            let id = UserID(rawValue: "u-dora")!
            #expect(try await other.user(id: id)?.tokenVersion == 0)
            try await store.setRoles(["seller"], of: id)
            #expect(try await other.user(id: id)?.tokenVersion == 1)
            try await other.revokeTokens(of: id)
            #expect(try await store.user(id: id)?.tokenVersion == 2)
            await #expect(throws: UserStoreError.unknownUser) {
                try await store.revokeTokens(of: UserID(rawValue: "nobody")!)
            }
        }
    }

    /// The most recently saved method is the default; saving one again makes it the default again;
    /// a user who does not exist saves nothing.
    @Test(arguments: Backend.allCases)
    func paymentMethods_areKept_defaultFirst(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            try await store.createUser(Self.user("fay"))
            let fay = UserID(rawValue: "u-fay")!
            #expect(try await other.paymentMethods(of: fay).isEmpty)
            let visa = SavedPaymentMethod(
                id: PaymentMethodID(rawValue: "pm_card_visa")!, brand: "visa", last4: "4242",
                savedAt: Timestamp(millisecondsSinceEpoch: 1_000))
            var amex = SavedPaymentMethod(
                id: PaymentMethodID(rawValue: "pm_card_amex")!, brand: "amex", last4: "8431",
                savedAt: Timestamp(millisecondsSinceEpoch: 2_000))
            try await store.savePaymentMethod(visa, for: fay)
            try await store.savePaymentMethod(amex, for: fay)
            #expect(try await other.paymentMethods(of: fay) == [amex, visa])
            var visaAgain = visa
            visaAgain.savedAt = Timestamp(millisecondsSinceEpoch: 3_000)
            try await other.savePaymentMethod(visaAgain, for: fay)
            #expect(try await store.paymentMethods(of: fay) == [visaAgain, amex])
            #expect(try await store.removePaymentMethod(visa.id, of: fay))
            #expect(try await store.removePaymentMethod(visa.id, of: fay) == false)
            #expect(try await other.paymentMethods(of: fay) == [amex])
            amex.savedAt = Timestamp(millisecondsSinceEpoch: 4_000)
            await #expect(throws: UserStoreError.unknownUser) {
                try await store.savePaymentMethod(amex, for: UserID(rawValue: "nobody")!)
            }
        }
    }

    /// A default blocks its buyer once per lot: an owner repeating the block after a failover
    /// does not undo an admin's lift, and a default on another lot blocks again.
    @Test(arguments: Backend.allCases)
    func biddingBlocks_holdUntilLifted_once_perLot(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            try await store.createUser(Self.user("gus"))
            try await store.createUser(Self.user("hal"))
            let gus = UserID(rawValue: "u-gus")!
            let hal = UserID(rawValue: "u-hal")!
            let lot = AuctionID(rawValue: "lot-1")!
            #expect(try await other.user(id: gus)?.blockedFromBidding == false)
            #expect(try await store.blockFromBidding(gus, defaultedOn: lot, at: Timestamp(millisecondsSinceEpoch: 10)))
            #expect(
                try await other.blockFromBidding(gus, defaultedOn: lot, at: Timestamp(millisecondsSinceEpoch: 11))
                    == false)
            #expect(try await other.user(id: gus)?.blockedFromBidding == true)
            #expect(try await other.user(named: "gus")?.blockedFromBidding == true)
            #expect(try await other.user(id: hal)?.blockedFromBidding == false)

            #expect(try await other.liftBiddingBlocks(of: gus, by: hal, at: Timestamp(millisecondsSinceEpoch: 20)) == 1)
            #expect(try await store.liftBiddingBlocks(of: gus, by: hal, at: Timestamp(millisecondsSinceEpoch: 21)) == 0)
            #expect(try await store.user(id: gus)?.blockedFromBidding == false)
            #expect(
                try await store.blockFromBidding(gus, defaultedOn: lot, at: Timestamp(millisecondsSinceEpoch: 30))
                    == false)
            #expect(try await store.user(id: gus)?.blockedFromBidding == false)

            let secondLot = AuctionID(rawValue: "lot-2")!
            #expect(
                try await store.blockFromBidding(gus, defaultedOn: secondLot, at: Timestamp(millisecondsSinceEpoch: 40))
            )
            #expect(try await other.user(id: gus)?.blockedFromBidding == true)
            let blocks = try await other.biddingBlocks(of: gus)
            #expect(
                blocks == [
                    BiddingBlock(
                        auction: secondLot, blockedAt: Timestamp(millisecondsSinceEpoch: 40), liftedAt: nil,
                        liftedBy: nil),
                    BiddingBlock(
                        auction: lot, blockedAt: Timestamp(millisecondsSinceEpoch: 10),
                        liftedAt: Timestamp(millisecondsSinceEpoch: 20), liftedBy: hal),
                ])
            #expect(
                try await store.blockFromBidding(
                    UserID(rawValue: "nobody")!, defaultedOn: lot, at: Timestamp(millisecondsSinceEpoch: 50)) == false)
        }
    }

    /// Failures counted from two connections at once are all counted (the count is raised in the
    /// store, not read and written back), lock as the policy says, and are cleared.
    @Test(arguments: Backend.allCases)
    func loginFailures_areCountedOnce_each_lock_andClear(_ backend: Backend) async throws {
        try await withStore(backend) { store, other, _ in
            let now = Timestamp(millisecondsSinceEpoch: 1_000_000)
            let policy = LoginLockPolicy(freeFailures: 5, maximumLock: .seconds(900))
            #expect(try await store.loginFailures(of: "erin") == nil)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<20 {
                    let writer = index.isMultiple(of: 2) ? store : other
                    group.addTask { _ = try await writer.recordLoginFailure(of: "erin", now: now, policy: policy) }
                }
                try await group.waitForAll()
            }
            let counted = try await other.loginFailures(of: "erin")
            #expect(counted?.failures == 20)
            // The 20th failure locks for 2^14 s, capped at 15 minutes.
            #expect(counted?.lockedUntil == now.advanced(by: .seconds(900)))
            try await store.clearLoginFailures(of: "erin")
            #expect(try await other.loginFailures(of: "erin") == nil)
            let first = try await store.recordLoginFailure(of: "erin", now: now, policy: policy)
            #expect(first == LoginFailures(failures: 1, lockedUntil: Timestamp(millisecondsSinceEpoch: 0)))
        }
    }

    @Test func theLockPolicy_doublesAfterTheFreeFailures_upToItsMaximum() {
        let policy = LoginLockPolicy(freeFailures: 5, maximumLock: .seconds(900))
        #expect((1...5).map(policy.lock(afterFailures:)) == Array(repeating: .zero, count: 5))
        #expect(policy.lock(afterFailures: 6) == .seconds(1))
        #expect(policy.lock(afterFailures: 7) == .seconds(2))
        #expect(policy.lock(afterFailures: 14) == .seconds(256))
        #expect(policy.lock(afterFailures: 15) == .seconds(512))
        #expect(policy.lock(afterFailures: 16) == .seconds(900))
        #expect(policy.lock(afterFailures: 1_000_000) == .seconds(900))
    }
}
