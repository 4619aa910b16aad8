import Testing

@testable import Gateway

/// A login tells nothing about whether a username exists by how long it takes: the hash checked for
/// an unknown user has the configured bcrypt cost, as every stored one does. (Measured in the
/// README: a wrong password of an existing user and an unknown user within 1 % of each other.)
@Suite struct LoginWorkTests {
    @Test func anUnknownUser_costsTheSameBcryptWorkAsAKnownOne() async throws {
        try await GatewayHarness.run(configure: { $0.passwordCost = 6 }) { client, harness in
            _ = try await client.signUp("kim")
            let stored = try #require(try await harness.api.users.user(named: "kim"))
            #expect(Self.cost(of: stored.passwordHash) == 6)
            #expect(Self.cost(of: harness.api.unknownUserHash) == 6)
        }
    }

    /// The cost field of a modular-crypt bcrypt hash (`$2b$06$…`).
    static func cost(of hash: String) -> Int? {
        let fields = hash.split(separator: "$")
        return fields.count >= 3 ? Int(fields[1]) : nil
    }
}
