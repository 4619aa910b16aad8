import ArtPayClient
import AuctionCore
import ChaosCheck
import ClusterCore
import Foundation
import Synchronization

/// The buyers of a chaos run: every bidder looks at their invoices every second, through a random
/// node, and pays what is due — with a card that succeeds, or first with one that is declined; a
/// few never pay (a default, then a second-chance offer, which most runner-ups take). A quarter of
/// the bidders keep a card on file instead, which the lots' owners charge without them. A buyer
/// who defaults is blocked from bidding; an admin lifts every block every ten seconds.
extension ChaosWorkload {
    static let payingCard = "pm_card_visa"
    static let decliningCard = "pm_card_chargeDeclined"

    func pay(until deadline: ContinuousClock.Instant) async {
        var random = SeededRandom(seed: seed ^ 0xBA11_F00D)
        let nodes = cluster.nodes.map(\.http)
        var cardOnFile: Set<UserID> = []
        for bidder in bidders.prefix(bidders.count / 4) {
            let node = nodes[Int(random.next() % UInt64(nodes.count))]
            if (try? await APIClient(base: node, token: bidder.token).call(
                "POST", "/v1/me/payment-methods", json: ["paymentMethod": Self.payingCard], timeout: 3)) != nil
            {
                cardOnFile.insert(bidder.id)
            }
        }
        payments.withLock { $0.cardsOnFile = cardOnFile.count }
        let admin = try? await ChaosWorkload.retrying(nodes) {
            try await APIClient(base: $0).loggedIn("chaos-admin", "chaos-admin-password")
        }
        var rounds = 0
        /// What each buyer decided for each lot and round: pay (with which card first) or not.
        var plans: [String: (first: String?, thenPays: Bool)] = [:]
        var tried: Set<String> = []
        while ContinuousClock.now < deadline, !Task.isCancelled {
            for bidder in bidders {
                let node = nodes[Int(random.next() % UInt64(nodes.count))]
                guard
                    let answer = try? await APIClient(base: node, token: bidder.token).call(
                        "GET", "/v1/me/settlements", timeout: 3),
                    let settlements = answer["settlements"] as? [[String: Any]]
                else { continue }
                for settlement in settlements {
                    guard let lot = settlement["auctionId"] as? String, let state = settlement["state"] as? String,
                        let round = settlement["round"] as? Int
                    else { continue }
                    let key = "\(lot)#\(round)"
                    if let offer = settlement["secondChanceOffer"] as? [String: Any],
                        offer["bidderId"] as? String == bidder.id.rawValue, state == "second_chance_offered",
                        !tried.contains(key + "offer")
                    {
                        tried.insert(key + "offer")
                        let accept = random.next() % 10 < 7
                        _ = try? await APIClient(base: node, token: bidder.token).call(
                            "POST", "/v1/me/settlements/\(lot)/second-chance", json: ["accept": accept], timeout: 3)
                        continue
                    }
                    guard settlement["buyerId"] as? String == bidder.id.rawValue,
                        settlement["paymentInProgress"] as? Bool == false
                    else { continue }
                    // The owner pays it with the card on file.
                    if cardOnFile.contains(bidder.id) { continue }
                    if plans[key] == nil {
                        let roll = random.next() % 20
                        // 70 %: pays at once; 20 %: declined first, then pays; 10 %: never pays.
                        plans[key] =
                            roll < 14
                            ? (Self.payingCard, true) : roll < 18 ? (Self.decliningCard, true) : (nil, false)
                    }
                    guard let plan = plans[key] else { continue }
                    let card: String?
                    switch state {
                    case "due" where settlement["paymentMethod"] == nil: card = plan.first
                    case "declined": card = plan.thenPays ? Self.payingCard : nil
                    default: card = nil
                    }
                    guard let card else { continue }
                    _ = try? await APIClient(base: node, token: bidder.token).call(
                        "POST", "/v1/me/settlements/\(lot)/payment-method", json: ["paymentMethod": card], timeout: 3)
                }
            }
            rounds += 1
            if rounds % 10 == 0, let admin {
                for bidder in bidders {
                    let node = nodes[Int(random.next() % UInt64(nodes.count))]
                    if (try? await APIClient(base: node, token: admin.token).call(
                        "DELETE", "/v1/users/\(bidder.id.rawValue)/bidding-blocks", timeout: 3)) != nil
                    {
                        payments.withLock { $0.blocksLifted += 1 }
                    }
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
