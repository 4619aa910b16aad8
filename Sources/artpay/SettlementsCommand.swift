import ArgumentParser
import ArtPayClient
import Foundation

/// Who the CLI acts as: `--user`/`--password`, else the session saved by `artpay login`.
struct SessionOptions: ParsableArguments {
    @Option(help: "Log in as this user first (else the saved session).") var user: String?
    @Option(help: "Password for --user.") var password: String?

    func token(on nodes: [String]) async throws -> String {
        if let user, let password {
            let session = try await onAnyNode(nodes, token: nil) {
                try await $0.call("POST", "/v1/sessions", json: ["username": user, "password": password])
            }
            guard let token = session["token"] as? String else { throw ValidationError("no token in the answer") }
            return token
        }
        guard let token = CLISession.load()?.token else {
            throw ValidationError("log in first (artpay login) or pass --user and --password")
        }
        return token
    }
}

/// `artpay settlements …`: invoices, paying, cards on file, second-chance offers, and the admin's
/// refunds, cancellations and blocks — the same API the web room uses.
struct SettlementsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settlements",
        abstract: "Invoices and payments: yours, or every lot's (admin).",
        subcommands: [
            Mine.self, All.self, Pay.self, Cards.self, SecondChance.self, Refund.self, Cancel.self, Blocks.self,
        ],
        defaultSubcommand: Mine.self)

    /// One settlement per line: lot, round, state, amounts in minor units, deadline, offer.
    static func printSettlements(_ answer: [String: Any]) {
        let settlements = answer["settlements"] as? [[String: Any]] ?? []
        if settlements.isEmpty { print("no settlements") }
        for settlement in settlements { print(line(settlement)) }
    }

    static func line(_ settlement: [String: Any]) -> String {
        let currency = settlement["currency"] as? String ?? ""
        func amount(_ key: String) -> String { settlement[key].map { "\($0) \(currency)" } ?? "-" }
        var line =
            "\(settlement["auctionId"] ?? "?")  round \(settlement["round"] ?? "?")  \(settlement["state"] ?? "?")"
            + "  buyer \(settlement["buyerId"] ?? "-")  hammer \(amount("hammer"))  premium \(amount("buyersPremium"))"
            + "  total \(amount("total"))  payout \(amount("sellerPayout"))  due by \(settlement["dueBy"] ?? "-")"
        if let method = settlement["paymentMethod"] { line += "  method \(method)" }
        if let captured = settlement["captured"] { line += "  captured \(captured) \(currency)" }
        if let refunded = settlement["refunded"] { line += "  refunded \(refunded) \(currency)" }
        if let offer = settlement["secondChanceOffer"] as? [String: Any] {
            line += "  offer to \(offer["bidderId"] ?? "?") at \(offer["price"] ?? "?") until \(offer["expiresAt"] ?? "?")"
        }
        return line
    }

    struct Mine: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mine", abstract: "Your invoices, and second-chance offers made to you.")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions

        func run() async throws {
            let token = try await session.token(on: node.list)
            SettlementsCommand.printSettlements(
                try await onAnyNode(node.list, token: token) { try await $0.call("GET", "/v1/me/settlements") })
        }
    }

    struct All: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "all", abstract: "Every lot's settlement, optionally in one state (admin).")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Option(help: "due, authorizing, authorized, captured, settled, declined, defaulted, …") var state: String?
        @Option(help: "At most this many.") var limit: Int = 100

        func run() async throws {
            let token = try await session.token(on: node.list)
            var path = "/v1/settlements?limit=\(limit)"
            if let state { path += "&state=\(state)" }
            SettlementsCommand.printSettlements(
                try await onAnyNode(node.list, token: token) { try await $0.call("GET", path) })
        }
    }

    struct Pay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "pay", abstract: "Pay an invoice (or try another method after a decline).")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Argument(help: "The lot's auction id.") var auction: String
        @Argument(help: "A provider payment-method token (pm_card_visa in the sandbox).") var paymentMethod: String

        func run() async throws {
            let token = try await session.token(on: node.list)
            let answer = try await onAnyNode(node.list, token: token) {
                try await $0.call(
                    "POST", "/v1/me/settlements/\(auction)/payment-method", json: ["paymentMethod": paymentMethod])
            }
            print(SettlementsCommand.line(answer))
        }
    }

    struct Cards: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cards",
            abstract: "Your payment methods on file (the default pays for what you win, with no action from you).")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Option(help: "Save this provider token as your default (checked with the provider).") var add: String?
        @Option(help: "Forget this saved method.") var remove: String?

        func run() async throws {
            let token = try await session.token(on: node.list)
            if let add {
                _ = try await onAnyNode(node.list, token: token) {
                    try await $0.call("POST", "/v1/me/payment-methods", json: ["paymentMethod": add])
                }
            }
            if let remove {
                _ = try await onAnyNode(node.list, token: token) {
                    try await $0.call("DELETE", "/v1/me/payment-methods/\(remove)")
                }
            }
            let answer = try await onAnyNode(node.list, token: token) {
                try await $0.call("GET", "/v1/me/payment-methods")
            }
            let methods = answer["paymentMethods"] as? [[String: Any]] ?? []
            if methods.isEmpty { print("no payment methods on file") }
            for method in methods {
                print(
                    "\(method["id"] ?? "?")  \(method["brand"] ?? "?") …\(method["last4"] ?? "?")  saved \(method["savedAt"] ?? "?")"
                        + (method["isDefault"] as? Bool == true ? "  (default)" : ""))
            }
        }
    }

    struct SecondChance: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "second-chance", abstract: "Take or decline a second-chance offer made to you.")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Argument(help: "The lot's auction id.") var auction: String
        @Flag(help: "Take the offer (--decline to refuse it).") var accept = false
        @Flag(help: "Refuse the offer.") var decline = false

        func validate() throws {
            guard accept != decline else { throw ValidationError("say --accept or --decline") }
        }

        func run() async throws {
            let token = try await session.token(on: node.list)
            let answer = try await onAnyNode(node.list, token: token) {
                try await $0.call("POST", "/v1/me/settlements/\(auction)/second-chance", json: ["accept": accept])
            }
            print(SettlementsCommand.line(answer))
        }
    }

    struct Refund: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "refund", abstract: "Refund part or all of a capture (admin).")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Argument(help: "The lot's auction id.") var auction: String
        @Argument(help: "The amount, in minor units of the invoice's currency.") var amount: Int64
        @Option(help: "The invoice's currency (ISO 4217).") var currency: String

        func run() async throws {
            let token = try await session.token(on: node.list)
            let answer = try await onAnyNode(node.list, token: token) {
                try await $0.call(
                    "POST", "/v1/settlements/\(auction)/refund", json: ["amount": amount, "currency": currency])
            }
            print(SettlementsCommand.line(answer))
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cancel", abstract: "Cancel a settlement before capture (admin).")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Argument(help: "The lot's auction id.") var auction: String
        @Option(help: "Why (kept in the lot's log).") var reason: String

        func run() async throws {
            let token = try await session.token(on: node.list)
            let answer = try await onAnyNode(node.list, token: token) {
                try await $0.call("POST", "/v1/settlements/\(auction)/cancel", json: ["reason": reason])
            }
            print(SettlementsCommand.line(answer))
        }
    }

    struct Blocks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "blocks", abstract: "A user's blocks from bidding after defaults; --lift lifts them (admin).")
        @OptionGroup var node: NodeOptions
        @OptionGroup var session: SessionOptions
        @Argument(help: "The user's id.") var userId: String
        @Flag(help: "Lift every block in force.") var lift = false

        func run() async throws {
            let token = try await session.token(on: node.list)
            let answer = try await onAnyNode(node.list, token: token) {
                try await $0.call(lift ? "DELETE" : "GET", "/v1/users/\(userId)/bidding-blocks")
            }
            let blocked = answer["blockedFromBidding"] as? Bool == true
            print("\(userId): \(blocked ? "blocked from bidding" : "may bid")")
            for block in answer["blocks"] as? [[String: Any]] ?? [] {
                let lifted = block["liftedAt"].map { "lifted \($0) by \(block["liftedBy"] ?? "?")" } ?? "in force"
                print("  did not pay for \(block["auctionId"] ?? "?")  blocked \(block["blockedAt"] ?? "?")  \(lifted)")
            }
        }
    }
}
