import ArgumentParser
import ArtPayClient
import Foundation

/// Where the CLI talks to: `--node` (repeatable), else the nodes of `artpay dev`.
struct NodeOptions: ParsableArguments {
    @Option(
        name: .customLong("node"),
        help: "A node's HTTP base URL; repeat to list fallbacks. Default: the artpay dev nodes.")
    var nodes: [String] = []

    var list: [String] {
        nodes.isEmpty ? ["http://127.0.0.1:8100", "http://127.0.0.2:8100", "http://127.0.0.3:8100"] : nodes
    }
}

/// The CLI's saved session (`.artpay/cli-session.json`): the token of the last `artpay login`.
struct CLISession: Codable {
    var username: String
    var token: String

    static let path = ".artpay/cli-session.json"

    static func load() -> CLISession? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(CLISession.self, from: data)
    }

    func save() throws {
        try FileManager.default.createDirectory(atPath: ".artpay", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(
            atPath: Self.path, contents: try JSONEncoder().encode(self), attributes: [.posixPermissions: 0o600])
    }
}

/// Runs `call` on each node in turn until one answers (a refused connection or a 503 moves on).
func onAnyNode(_ nodes: [String], token: String?, _ call: (APIClient) async throws -> [String: Any]) async throws
    -> [String: Any]
{
    var lastError: (any Error)?
    for node in nodes {
        do {
            return try await call(APIClient(base: node, token: token))
        } catch let failure as APIClient.Failure where failure.status != 503 {
            throw failure
        } catch {
            lastError = error
        }
    }
    throw lastError ?? ValidationError("no node given")
}

struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login", abstract: "Log in and keep the token for later commands.")
    @OptionGroup var node: NodeOptions
    @Option(help: "Username.") var user: String
    @Option(help: "Password.") var password: String

    func run() async throws {
        let session = try await onAnyNode(node.list, token: nil) {
            try await $0.call("POST", "/v1/sessions", json: ["username": user, "password": password])
        }
        guard let token = session["token"] as? String else { throw ValidationError("no token in the answer") }
        try CLISession(username: user, token: token).save()
        print("logged in as \(user) (token saved in \(CLISession.path), expires \(session["expiresAt"] ?? "?"))")
    }
}

struct BidCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bid",
        abstract: "Bid on an auction (maximum in minor units); retries the same bid id on another node.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The auction id.") var auction: String
    @Argument(help: "Your maximum, in minor units of the auction's currency (cents for EUR).") var maximum: Int64
    @Option(help: "Log in as this user first (else the saved session).") var user: String?
    @Option(help: "Password for --user.") var password: String?
    @Option(help: "The bid id (default: a new one). Sending the same id again never makes a second bid.") var bidId:
        String?

    func run() async throws {
        var token = CLISession.load()?.token
        if let user, let password {
            let session = try await onAnyNode(node.list, token: nil) {
                try await $0.call("POST", "/v1/sessions", json: ["username": user, "password": password])
            }
            token = session["token"] as? String
        }
        guard let token else { throw ValidationError("log in first (artpay login) or pass --user and --password") }
        let auctionView = try await onAnyNode(node.list, token: token) {
            try await $0.call("GET", "/v1/auctions/\(auction)")
        }
        let currency = auctionView["currency"] as? String ?? "EUR"
        let bid: [String: Any] = [
            "bidId": bidId ?? "cli-\(UUID().uuidString.lowercased())", "maximum": maximum, "currency": currency,
        ]
        let answer = try await onAnyNode(node.list, token: token) {
            try await $0.call("POST", "/v1/auctions/\(auction)/bids", json: bid)
        }
        let view = answer["auction"] as? [String: Any] ?? [:]
        print(
            "bid \(answer["bidId"] ?? "?"): \(answer["outcome"] ?? "?")\(answer["replayed"] as? Bool == true ? " (already accepted)" : ""); "
                + "price \(view["price"] ?? "?") \(currency), next minimum \(view["minimumNextBid"] ?? "?"), seq \(answer["seq"] ?? "?")"
        )
    }
}

struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Follow an auction's live events; resumes on another node after a failure.")
    @OptionGroup var node: NodeOptions
    @Argument(help: "The auction id.") var auction: String
    @Option(help: "Start after this event seq (0: from the beginning).") var since: Int64 = 0

    func run() async throws {
        for await (event, _) in EventStreamClient.follow(auction, after: since, nodes: node.list) {
            print("#\(event.id) \(event.type) \(event.data)")
            fflush(nil)
        }
    }
}

struct NotificationsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notifications",
        abstract:
            "Follow your notifications (outbid, won, lost, extended, cancelled); resumes on another node after a failure."
    )
    @OptionGroup var node: NodeOptions
    @Option(help: "Also show those of the last minutes that the node still keeps.") var minutes: Int = 0

    func run() async throws {
        guard let token = CLISession.load()?.token else { throw ValidationError("log in first (artpay login)") }
        let since = minutes > 0 ? Date().addingTimeInterval(-60 * Double(minutes)) : nil
        for await (event, _) in EventStreamClient.notifications(token: token, nodes: node.list, since: since) {
            print("\(event.type) \(event.data)")
            fflush(nil)
        }
    }
}

struct AuctionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "auctions", abstract: "List auctions, soonest end first.")
    @OptionGroup var node: NodeOptions
    @Option(help: "open, closing_soon, ended or all.") var status: String = "open"
    @Option(help: "Only this sale.") var sale: String?

    func run() async throws {
        var path = "/v1/auctions?status=\(status)"
        if let sale { path += "&sale=\(sale)" }
        let answer = try await onAnyNode(node.list, token: nil) { try await $0.call("GET", path) }
        let auctions = answer["auctions"] as? [[String: Any]] ?? []
        if auctions.isEmpty { print("no \(status) auctions") }
        for auction in auctions {
            let leader = (auction["leaderPaddle"] as? NSNumber).map { "paddle \($0)" } ?? "-"
            print(
                "\(auction["id"] ?? "?")  \(auction["status"] ?? "?")  \(auction["price"] ?? "?") \(auction["currency"] ?? "")"
                    + "  next \(auction["minimumNextBid"] ?? "?")  bids \(auction["bidCount"] ?? 0)  leader \(leader)"
                    + "  ends \(auction["endsAt"] ?? "?")  \(auction["title"] ?? "")")
        }
    }
}
