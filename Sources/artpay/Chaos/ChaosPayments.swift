import ArtPayClient
import AuctionCore
import ChaosCheck
import ClusterCore
import Foundation
import Synchronization

/// The buyers of a chaos run: every bidder looks at their invoices every second, through a random
/// node, and pays what is due — with a card that succeeds, or first with one that is declined; a
/// few never pay (a default, then a second-chance offer, which most runner-ups take).
extension ChaosWorkload {
    static let payingCard = "pm_card_visa"
    static let decliningCard = "pm_card_chargeDeclined"

    func pay(until deadline: ContinuousClock.Instant) async {
        var random = SeededRandom(seed: seed ^ 0xBA11_F00D)
        let nodes = cluster.nodes.map(\.http)
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
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
