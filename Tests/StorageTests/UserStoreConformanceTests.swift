import AuctionCore
import Storage
import Testing

@Suite struct UserStoreConformanceTests {
    static func user(_ name: String, id: String? = nil) -> StoredUser {
        StoredUser(
            id: UserID(rawValue: id ?? "u-\(name)")!, username: name, passwordHash: "$2b$04$hash-of-\(name)",
            roles: ["bidder"], createdAt: Timestamp(millisecondsSinceEpoch: 1_000))
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
}
