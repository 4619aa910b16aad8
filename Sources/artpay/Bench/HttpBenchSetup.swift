import ArtPayClient
import AuctionCore
import Foundation
import Gateway

/// The users of an HTTP benchmark run: bidders' bearer tokens (the same tokens work on the nodes
/// and on the baseline servers, which verify with the nodes' key) and the seller.
struct HttpBenchUsers: Sendable {
    var bidderTokens: [String]
    var sellerId: String
    var sellerToken: String
}

/// Sets a run up over the nodes' HTTP API: users, tokens, auctions, and waits until every node's
/// read model has them. Every wait is a poll with a deadline.
enum HttpBenchSetup {
    static let password = "bench-password"

    /// Logs the bootstrap admin in, registers a seller and `bidders` bidders and logs each in.
    static func users(
        nodes: [String], bidders: Int, run: String, admin: (username: String, password: String)
    ) async throws -> HttpBenchUsers {
        let adminClient = try await retrying(nodes) {
            try await APIClient(base: $0).loggedIn(admin.username, admin.password)
        }
        let adminMe = try await APIClient(base: adminClient.base, token: adminClient.token).call("GET", "/v1/me")
        guard (adminMe["roles"] as? [String])?.contains("admin") == true else {
            throw ChaosError("the bootstrap admin has no admin role: \(adminMe)")
        }
        let (sellerId, sellerToken) = try await user("s-\(run)", roles: ["seller"], nodes: nodes)
        let tokens = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            var tokens = Array(repeating: "", count: bidders)
            for index in 0..<bidders {
                if index >= 8, let (done, token) = try await group.next() { tokens[done] = token }
                group.addTask {
                    let (_, token) = try await user("b-\(run)-\(index)", roles: ["bidder"], nodes: nodes, first: index)
                    return (index, token)
                }
            }
            for try await (done, token) in group { tokens[done] = token }
            return tokens
        }
        guard !tokens.contains("") else { throw ChaosError("a bidder got no token") }
        return HttpBenchUsers(bidderTokens: tokens, sellerId: sellerId, sellerToken: sellerToken)
    }

    /// Registers `username` (409 = registered by an earlier attempt) and logs in: (user id, token).
    private static func user(_ username: String, roles: [String], nodes: [String], first: Int = 0) async throws
        -> (String, String)
    {
        let rotated = Array(nodes[(first % nodes.count)...] + nodes[..<(first % nodes.count)])
        _ = try await retrying(rotated) { base -> [String: Any] in
            do {
                return try await APIClient(base: base).call(
                    "POST", "/v1/users", json: ["username": username, "password": password, "roles": roles])
            } catch let failure as APIClient.Failure where failure.status == 409 {
                return [:]
            }
        }
        let client = try await retrying(rotated) { try await APIClient(base: $0).loggedIn(username, password) }
        let me = try await retrying(rotated) {
            try await APIClient(base: $0, token: client.token).call("GET", "/v1/me")
        }
        guard let id = me["id"] as? String, let token = client.token else { throw ChaosError("no id for \(username)") }
        return (id, token)
    }

    /// Tokens signed here with the nodes' key, for runs without nodes (`--designs` without artpay).
    static func mintedUsers(keyFile: String, bidders: Int, run: String) async throws -> HttpBenchUsers {
        let pem = try String(contentsOfFile: keyFile, encoding: .utf8)
        let authority = try await TokenAuthority.make(
            signing: .init(kid: "k1", privateKeyPEM: pem), lifetime: .seconds(86_400))
        var tokens: [String] = []
        for index in 0..<bidders {
            let identity = Identity(
                userId: UserID(rawValue: "u-\(run)-b\(index)")!, username: "b-\(run)-\(index)", roles: [.bidder])
            tokens.append(try await authority.issue(for: identity).token)
        }
        let seller = Identity(userId: UserID(rawValue: "u-\(run)-s")!, username: "s-\(run)", roles: [.seller])
        return HttpBenchUsers(
            bidderTokens: tokens, sellerId: seller.userId.rawValue,
            sellerToken: try await authority.issue(for: seller).token)
    }

    /// Creates `ids` (EUR, from 10.00, closing in a day, no soft close), `concurrency` at a time,
    /// in turn through every node; a 409 means an earlier attempt created it.
    static func createAuctions(
        nodes: [String], sellerToken: String, ids: [String], sale: String?, concurrency: Int = 16
    ) async throws {
        let closesAt = Date().addingTimeInterval(86_400).formatted(.iso8601)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    var body: [String: Any] = [
                        "id": id, "title": "Bench lot \(id)", "currency": "EUR", "startingPrice": 1_000,
                        "closesAt": closesAt, "extensionWindowSeconds": 0,
                    ]
                    if let sale { body["saleId"] = sale }
                    let rotated = Array(nodes[(index % nodes.count)...] + nodes[..<(index % nodes.count)])
                    _ = try await retrying(rotated) { base -> [String: Any] in
                        do {
                            return try await APIClient(base: base, token: sellerToken).call(
                                "POST", "/v1/auctions", json: body, timeout: 20)
                        } catch let failure as APIClient.Failure where failure.status == 409 {
                            return [:]
                        }
                    }
                }
                if index >= concurrency - 1 { _ = try await group.next() }
            }
            try await group.waitForAll()
        }
    }

    /// Waits until every node's read model lists the hot lot and all `count` lots of `sale`.
    static func waitForReadModels(nodes: [String], hot: String, sale: String, count: Int, seconds: Int) async throws {
        try await LocalNetwork.waitUntil("every node's read model has the \(count + 1) auctions", seconds: seconds) {
            for node in nodes {
                guard
                    let hotLot = try? await APIClient(base: node).call("GET", "/v1/auctions/\(hot)", timeout: 5),
                    hotLot["id"] as? String == hot,
                    let listing = try? await APIClient(base: node).call(
                        "GET", "/v1/auctions?sale=\(sale)&status=all&limit=1000", timeout: 5),
                    (listing["auctions"] as? [Any])?.count == count
                else { return false }
            }
            return true
        }
    }

    /// `body` on each node in turn until one succeeds; at most 3 rounds, 200 ms apart.
    static func retrying<T>(_ nodes: [String], _ body: (String) async throws -> T) async throws -> T {
        var lastError: (any Error)?
        for round in 0..<3 {
            for node in nodes {
                do {
                    return try await body(node)
                } catch {
                    lastError = error
                }
            }
            if round < 2 { try await Task.sleep(for: .milliseconds(200)) }
        }
        throw lastError ?? ChaosError("no node answered")
    }
}
