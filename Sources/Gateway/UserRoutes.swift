import AuctionCore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdBcrypt
import NIOPosix
import Node
import Storage

/// Users and sessions: sign-up, login, the caller, roles, and revoking tokens.
extension GatewayAPI {
    func addUserRoutes(to api: RouterGroup<GatewayContext>) {
        api.post("/users", use: register)
        api.post("/sessions", use: login)
        api.get("/me", use: me)
        api.delete("/me/sessions", use: revokeOwnTokens)
        api.delete("/users/:id/sessions", use: revokeTokens)
        api.put("/users/:id/roles", use: grantRoles)
    }

    /// Creates the admin `username` with `password` unless a user of that name exists (the first
    /// admin of a new deployment; later admins are granted the role by an admin).
    public func ensureAdmin(username: String, password: String) async throws {
        let name = username.lowercased()
        if try await users.user(named: name) != nil { return }
        let cost = configuration.passwordCost
        let hash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
        do {
            try await users.createUser(
                StoredUser(
                    id: UserID(rawValue: "u-" + UUID().uuidString.lowercased())!, username: name, passwordHash: hash,
                    roles: [Role.admin, .bidder, .seller].map(\.rawValue).sorted(), createdAt: clock.now()))
        } catch {
            // Another node may have created it first.
            guard error == .usernameTaken else { throw error }
        }
    }

    @Sendable func register(_ request: Request, context: GatewayContext) async throws -> Response {
        let body = try RegisterRequest.decode(try await Self.body(request, context))
        let username = body.username.lowercased()
        guard username.count >= 3, username.count <= 32,
            username.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) })
        else { throw APIError.malformed("A username has 3 to 32 of a–z 0–9 _ - .") }
        // bcrypt reads at most 72 bytes and stops at a NUL: anything past either would be ignored
        // silently, so such passwords are refused instead.
        guard body.password.count >= 8, body.password.utf8.count <= 72, !body.password.contains("\u{0}") else {
            throw APIError.malformed("A password has at least 8 characters, at most 72 bytes of UTF-8, and no NUL.")
        }
        let roles = try (body.roles ?? ["bidder"]).map { name throws(APIError) -> Role in
            guard let role = Role(rawValue: name), Role.selfService.contains(role) else {
                throw APIError.malformed("Self-service roles are bidder and seller.")
            }
            return role
        }
        let cost = configuration.passwordCost
        let password = body.password
        let hash = try await NIOThreadPool.singleton.runIfActive { Bcrypt.hash(password, cost: cost) }
        let user = StoredUser(
            id: UserID(rawValue: "u-" + UUID().uuidString.lowercased())!, username: username, passwordHash: hash,
            roles: Array(Set(roles.map(\.rawValue))).sorted(), createdAt: clock.now())
        do {
            try await users.createUser(user)
        } catch .usernameTaken {
            throw APIError(.conflict, code: "username_taken", detail: "This username is taken.")
        } catch {
            throw APIError.storeUnavailable
        }
        return try Self.json(
            UserView(id: user.id.rawValue, username: user.username, roles: user.roles), status: .created)
    }

    /// `POST /v1/sessions`. The same work whether or not the user exists (the hash checked for an
    /// unknown user has the configured cost), and failed logins per username — counted in the
    /// store, so on every node — lock it for a while (``LoginLockPolicy``): 429 with `Retry-After`,
    /// for names that do not exist as well.
    @Sendable func login(_ request: Request, context: GatewayContext) async throws -> Response {
        let body = try LoginRequest.decode(try await Self.body(request, context))
        let username = body.username.lowercased()
        let now = clock.now()
        let failures: LoginFailures?
        let stored: StoredUser?
        do {
            failures = try await users.loginFailures(of: username)
            stored = try await users.user(named: username)
        } catch {
            throw APIError.storeUnavailable
        }
        if let failures, now < failures.lockedUntil { throw Self.loginLocked(until: failures.lockedUntil, now: now) }
        let password = body.password
        let hash = stored?.passwordHash ?? unknownUserHash
        let valid = try await NIOThreadPool.singleton.runIfActive { Bcrypt.verify(password, hash: hash) }
        guard let stored, valid else {
            let counted = try? await users.recordLoginFailure(of: username, now: now, policy: configuration.loginLock)
            if let counted, now < counted.lockedUntil { throw Self.loginLocked(until: counted.lockedUntil, now: now) }
            throw APIError(.unauthorized, code: "invalid_credentials", detail: "Unknown username or wrong password.")
        }
        if failures != nil { try? await users.clearLoginFailures(of: username) }
        let identity = Identity(
            userId: stored.id, username: stored.username, roles: Set(stored.roles.compactMap(Role.init(rawValue:))),
            tokenVersion: stored.tokenVersion)
        let (token, expires) = try await tokens.issue(for: identity)
        var response = try Self.json(
            SessionView(
                token: token,
                expiresAt: Timestamps.format(
                    Timestamp(millisecondsSinceEpoch: Int64(expires.timeIntervalSince1970 * 1_000)))))
        response.headers[.cacheControl] = "no-store"
        return response
    }

    static func loginLocked(until: Timestamp, now: Timestamp) -> APIError {
        let seconds = max(1, (until.millisecondsSinceEpoch - now.millisecondsSinceEpoch + 999) / 1_000)
        return APIError(
            .tooManyRequests, code: "login_locked",
            detail: "Too many failed logins for this username; try again in \(seconds) s.",
            extra: ["retryAfterSeconds": "\(seconds)"], headers: [.retryAfter: "\(seconds)"])
    }

    /// The caller as the store says now, for admin actions: a token revoked a moment ago on another
    /// node, or an admin role just taken away, is refused here even if this node's cache has not
    /// heard yet.
    func freshAdmin(_ context: GatewayContext) async throws(APIError) -> Identity {
        let caller = try context.caller()
        guard try await directory.currentStanding(of: caller, fresh: true).roles.contains(.admin) else {
            throw APIError.forbidden(.admin)
        }
        return caller
    }

    /// Every node drops what it cached about `user`: its tokens' fate changes now.
    func userChanged(_ user: UserID) async {
        await node.announceUserChange(user)
    }

    /// `DELETE /v1/me/sessions`: log out everywhere — every token of the caller stops working.
    @Sendable func revokeOwnTokens(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        do {
            try await users.revokeTokens(of: caller.userId)
        } catch .unknownUser {
            throw APIError.tokenRevoked
        } catch {
            throw APIError.storeUnavailable
        }
        await userChanged(caller.userId)
        return Response(status: .noContent)
    }

    /// `DELETE /v1/users/{id}/sessions` (admin): every token of that user stops working.
    @Sendable func revokeTokens(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        guard let id = context.parameters.get("id").flatMap(UserID.init(rawValue:)) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        do {
            try await users.revokeTokens(of: id)
        } catch .unknownUser {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        } catch {
            throw APIError.storeUnavailable
        }
        await userChanged(id)
        return Response(status: .noContent)
    }

    @Sendable func me(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        return try Self.json(
            UserView(
                id: caller.userId.rawValue, username: caller.username, roles: caller.roles.map(\.rawValue).sorted(),
                blockedFromBidding: caller.blockedFromBidding))
    }

    @Sendable func grantRoles(_ request: Request, context: GatewayContext) async throws -> Response {
        _ = try await freshAdmin(context)
        let body = try RolesRequest.decode(try await Self.body(request, context))
        let roles = try body.roles.map { name throws(APIError) -> Role in
            guard let role = Role(rawValue: name) else { throw APIError.malformed("Unknown role '\(name)'.") }
            return role
        }
        guard let id = context.parameters.get("id").flatMap(UserID.init(rawValue:)) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        do {
            try await users.setRoles(Array(Set(roles.map(\.rawValue))).sorted(), of: id)
        } catch .unknownUser {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        } catch {
            throw APIError.storeUnavailable
        }
        await userChanged(id)
        guard let user = try? await users.user(id: id) else {
            throw APIError(.notFound, code: "user_not_found", detail: "There is no such user.")
        }
        return try Self.json(UserView(id: user.id.rawValue, username: user.username, roles: user.roles))
    }
}
