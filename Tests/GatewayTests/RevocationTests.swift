import Foundation
import Gateway
import HummingbirdTesting
import TestSupport
import Testing

/// Tokens stop working when the user's standing changes: roles taken away, logged out
/// everywhere, a user who is not in the store. Logins cost the same for unknown users and lock a
/// username after repeated failures.
@Suite struct RevocationTests {
    @Test func anAdminWhoseRoleIsTakenAway_isRefusedAtOnce_withTheOldToken() async throws {
        try await GatewayHarness.run { client, _ in
            let root = try await client.logIn("root", "root-password")
            let eve = try await client.signUp("eve", roles: ["bidder"])
            let eveId = try #require(try await client.send(.get, "/v1/me", token: eve).json["id"] as? String)
            let seller = try await client.signUp("sid", roles: ["seller"])
            _ = try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-rv"), token: seller)
            // Eve becomes an admin (her earlier token is revoked by the change), logs in again.
            let granted = try await client.send(
                .put, "/v1/users/\(eveId)/roles", json: #"{"roles":["admin","bidder"]}"#, token: root)
            #expect(granted.status == .ok)
            #expect(try await client.send(.get, "/v1/me", token: eve).json["code"] as? String == "token_revoked")
            let eveAdmin = try await client.logIn("eve", "password-123")
            #expect(
                try await client.send(.get, "/v1/me", token: eveAdmin).json["roles"] as? [String] == [
                    "admin", "bidder",
                ])
            // Root takes the role away; Eve's admin token no longer cancels, nor grants itself admin.
            let taken = try await client.send(
                .put, "/v1/users/\(eveId)/roles", json: #"{"roles":[]}"#, token: root)
            #expect(taken.status == .ok)
            let cancel = try await client.send(
                .post, "/v1/auctions/lot-rv/cancel", json: #"{"reason":"mine now"}"#, token: eveAdmin)
            #expect(cancel.status == .unauthorized)
            #expect(cancel.json["code"] as? String == "token_revoked")
            let regrant = try await client.send(
                .put, "/v1/users/\(eveId)/roles", json: #"{"roles":["admin"]}"#, token: eveAdmin)
            #expect(regrant.status == .unauthorized)
            // Logged in again, she has the roles the store has: none.
            let eveNow = try await client.logIn("eve", "password-123")
            let cancelNow = try await client.send(
                .post, "/v1/auctions/lot-rv/cancel", json: #"{"reason":"mine now"}"#, token: eveNow)
            #expect(cancelNow.status == .forbidden)
        }
    }

    @Test func logOutEverywhere_revokesEveryTokenOfTheCaller_only() async throws {
        try await GatewayHarness.run { client, _ in
            let first = try await client.signUp("lou")
            let second = try await client.logIn("lou", "password-123")
            let other = try await client.signUp("max")
            #expect(try await client.send(.delete, "/v1/me/sessions", token: first).status == .noContent)
            for token in [first, second] {
                let answer = try await client.send(.get, "/v1/me", token: token)
                #expect(answer.status == .unauthorized)
                #expect(answer.json["code"] as? String == "token_revoked")
            }
            #expect(try await client.send(.get, "/v1/me", token: other).status == .ok)
            let fresh = try await client.logIn("lou", "password-123")
            #expect(try await client.send(.get, "/v1/me", token: fresh).status == .ok)
        }
    }

    @Test func anAdminRevokesAUsersTokens() async throws {
        try await GatewayHarness.run { client, _ in
            let root = try await client.logIn("root", "root-password")
            let ned = try await client.signUp("ned")
            let nedId = try #require(try await client.send(.get, "/v1/me", token: ned).json["id"] as? String)
            #expect(try await client.send(.delete, "/v1/users/\(nedId)/sessions", token: ned).status == .forbidden)
            #expect(try await client.send(.delete, "/v1/users/\(nedId)/sessions", token: root).status == .noContent)
            #expect(try await client.send(.get, "/v1/me", token: ned).json["code"] as? String == "token_revoked")
            #expect(try await client.send(.delete, "/v1/users/u-nobody/sessions", token: root).status == .notFound)
        }
    }

    @Test func aValidlySignedTokenOfAUserNotInTheStore_isRefused() async throws {
        try await GatewayHarness.run { client, harness in
            let ghost = Identity(userId: .init(rawValue: "u-ghost")!, username: "ghost", roles: [.admin])
            let token = try await harness.tokens.issue(for: ghost).token
            let answer = try await client.send(.get, "/v1/me", token: token)
            #expect(answer.status == .unauthorized)
            #expect(answer.json["code"] as? String == "token_revoked")
        }
    }

    @Test func failedLogins_lockTheUsername_existingOrNot() async throws {
        // A first lock of a minute: nothing here depends on how fast the test runs.
        try await GatewayHarness.run(loginLock: .init(freeFailures: 5, firstLock: .seconds(60))) { client, _ in
            _ = try await client.signUp("kim")
            for username in ["kim", "nobody-here"] {
                // Five failures are free; the sixth locks the name.
                for attempt in 1...5 {
                    let answer = try await client.send(
                        .post, "/v1/sessions", json: #"{"username":"\#(username)","password":"wrong-\#(attempt)"}"#)
                    #expect(answer.status == .unauthorized, "\(username) attempt \(attempt)")
                    #expect(answer.json["code"] as? String == "invalid_credentials")
                }
                let locked = try await client.send(
                    .post, "/v1/sessions", json: #"{"username":"\#(username)","password":"wrong-6"}"#)
                #expect(locked.status == .tooManyRequests, "\(username): \(locked.status)")
                #expect(locked.json["code"] as? String == "login_locked")
                #expect(Int(locked.headers[.retryAfter] ?? "") ?? 0 > 50)
            }
            // Even the right password waits for the lock to end.
            let during = try await client.send(
                .post, "/v1/sessions", json: #"{"username":"kim","password":"password-123"}"#)
            #expect(during.status == .tooManyRequests)
        }
    }

    @Test func afterTheLock_theRightPasswordWorks_andTheCountStartsOver() async throws {
        try await GatewayHarness.run(loginLock: .init(freeFailures: 1, firstLock: .milliseconds(200))) { client, _ in
            _ = try await client.signUp("lee")
            for attempt in 1...2 {
                _ = try await client.send(
                    .post, "/v1/sessions", json: #"{"username":"lee","password":"wrong-\#(attempt)"}"#)
            }
            try await eventually("the lock ends") {
                try await client.send(.post, "/v1/sessions", json: #"{"username":"lee","password":"password-123"}"#)
                    .status == .ok
            }
            let afterwards = try await client.send(
                .post, "/v1/sessions", json: #"{"username":"lee","password":"wrong-again"}"#)
            #expect(afterwards.json["code"] as? String == "invalid_credentials", "the count started over")
        }
    }

    @Test func aSessionAnswer_isNotCached() async throws {
        try await GatewayHarness.run { client, _ in
            _ = try await client.signUp("cat")
            let session = try await client.send(
                .post, "/v1/sessions", json: #"{"username":"cat","password":"password-123"}"#)
            #expect(session.headers[.cacheControl] == "no-store")
        }
    }
}

@Suite struct PasswordRuleTests {
    /// bcrypt reads 72 bytes and stops at a NUL: longer passwords, or ones with a NUL, are refused
    /// rather than silently cut.
    @Test func passwordsBcryptWouldCut_areRefused() async throws {
        try await GatewayHarness.run { client, _ in
            for (name, password) in [
                ("73 bytes", String(repeating: "a", count: 73)), ("NUL", "password\\u0000tail"),
                ("37 two-byte characters", String(repeating: "é", count: 37)),
            ] {
                let answer = try await client.send(
                    .post, "/v1/users", json: #"{"username":"pat","password":"\#(password)"}"#)
                #expect(answer.status == .badRequest, "\(name): \(answer.status)")
            }
            let ok = try await client.send(
                .post, "/v1/users", json: #"{"username":"pat","password":"\#(String(repeating: "a", count: 72))"}"#)
            #expect(ok.status == .created)
        }
    }
}
