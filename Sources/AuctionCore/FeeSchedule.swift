/// What a sold lot costs its buyer and pays its seller: the house's money rules.
///
/// The buyer's premium is marginal, by tiers of the hammer price, like the big houses: with the
/// defaults a hammer of 1,500,000.00 pays 26 % on the first 1,000,000.00 and 21 % on the other
/// 500,000.00. Tier limits are in major units so that one schedule serves every currency.
///
/// Invariant (checked by `validate`): tiers rise strictly, the last one is open-ended, every rate
/// is between 0 and 100 %; so premiums never decrease as the hammer rises, and every amount fits
/// `Int64` for any hammer up to `Money.maximumMinorUnits`.
public struct FeeSchedule: Hashable, Sendable, Codable {
    /// One band of the buyer's premium: `rateBasisPoints` (1/100 of a percent) on the part of the
    /// hammer price up to `upToMajorUnits` (nil: everything above the previous tier).
    public struct Tier: Hashable, Sendable, Codable {
        public var upToMajorUnits: Int64?
        public var rateBasisPoints: Int64

        public init(upToMajorUnits: Int64?, rateBasisPoints: Int64) {
            self.upToMajorUnits = upToMajorUnits
            self.rateBasisPoints = rateBasisPoints
        }
    }

    public var buyerPremium: [Tier]
    public var sellerCommissionBasisPoints: Int64
    /// How long the buyer has to pay after the hammer (3 days; seconds in `artpay dev`).
    public var paymentDeadline: Duration
    /// How long a runner-up has to answer a second-chance offer.
    public var secondChanceWindow: Duration

    public init(
        buyerPremium: [Tier], sellerCommissionBasisPoints: Int64, paymentDeadline: Duration,
        secondChanceWindow: Duration
    ) {
        self.buyerPremium = buyerPremium
        self.sellerCommissionBasisPoints = sellerCommissionBasisPoints
        self.paymentDeadline = paymentDeadline
        self.secondChanceWindow = secondChanceWindow
    }

    /// 26 % up to 1,000,000, 21 % up to 6,000,000, 15 % above; 10 % seller commission; 3 days to
    /// pay; 2 days to take a second-chance offer.
    public static let standard = FeeSchedule(
        buyerPremium: [
            Tier(upToMajorUnits: 1_000_000, rateBasisPoints: 2_600),
            Tier(upToMajorUnits: 6_000_000, rateBasisPoints: 2_100),
            Tier(upToMajorUnits: nil, rateBasisPoints: 1_500),
        ],
        sellerCommissionBasisPoints: 1_000, paymentDeadline: .seconds(3 * 86_400),
        secondChanceWindow: .seconds(2 * 86_400))

    public enum Problem: Error, Hashable, Sendable, CustomStringConvertible {
        case noTiers
        case tiersNotRising
        case lastTierNotOpenEnded
        case rateOutOfRange
        case deadlineOutOfRange

        public var description: String {
            switch self {
            case .noTiers: "the buyer's premium needs at least one tier"
            case .tiersNotRising: "tier limits must rise strictly and be positive"
            case .lastTierNotOpenEnded: "only the last tier is open-ended, and it must be"
            case .rateOutOfRange: "rates are between 0 and 10,000 basis points"
            case .deadlineOutOfRange:
                "the payment deadline and the second-chance window must be positive and at most a year"
            }
        }
    }

    public func validate() throws(Problem) {
        guard let last = buyerPremium.last else { throw .noTiers }
        guard last.upToMajorUnits == nil, buyerPremium.dropLast().allSatisfy({ $0.upToMajorUnits != nil }) else {
            throw .lastTierNotOpenEnded
        }
        let limits = buyerPremium.compactMap(\.upToMajorUnits)
        guard limits.allSatisfy({ $0 > 0 && $0 <= Money.maximumMinorUnits }),
            zip(limits, limits.dropFirst()).allSatisfy({ $0 < $1 })
        else { throw .tiersNotRising }
        let rates = buyerPremium.map(\.rateBasisPoints) + [sellerCommissionBasisPoints]
        guard rates.allSatisfy({ (0...10_000).contains($0) }) else { throw .rateOutOfRange }
        let year = Duration.seconds(365 * 86_400)
        guard paymentDeadline > .zero, secondChanceWindow > .zero, paymentDeadline <= year, secondChanceWindow <= year
        else { throw .deadlineOutOfRange }
    }

    /// The invoice of a lot hammered at `hammer` (positive, at most `Money.maximumMinorUnits`).
    /// Each amount is rounded once, half up, to the currency's minor unit.
    public func invoice(hammer: Money) -> Invoice {
        precondition(hammer.minorUnits > 0 && hammer.minorUnits <= Money.maximumMinorUnits, "hammer \(hammer)")
        let perMajor = hammer.currency.minorUnitsPerMajorUnit
        // Σ part × rate / 10,000, exact: whole ten-thousandths first, the remainders summed and
        // rounded once (a 100 % rate on 10^15 would overflow `Int64` if multiplied first).
        var whole: Int64 = 0
        var remainders: Int64 = 0
        var lower: Int64 = 0
        for tier in buyerPremium where hammer.minorUnits > lower {
            let upper = tier.upToMajorUnits.map { min($0, Money.maximumMinorUnits / perMajor) * perMajor }
            let part = min(hammer.minorUnits, upper ?? hammer.minorUnits) - lower
            guard part > 0 else { continue }
            whole += part / 10_000 * tier.rateBasisPoints
            remainders += part % 10_000 * tier.rateBasisPoints
            lower += part
        }
        let premium = whole + Self.roundedBasisPoints(remainders)
        let commission =
            hammer.minorUnits / 10_000 * sellerCommissionBasisPoints
            + Self.roundedBasisPoints(hammer.minorUnits % 10_000 * sellerCommissionBasisPoints)
        let currency = hammer.currency
        return Invoice(
            hammer: hammer, buyerPremium: Money(minorUnits: premium, currency: currency),
            sellerCommission: Money(minorUnits: commission, currency: currency))
    }

    /// `amount / 10,000`, half up (amounts are never negative here).
    private static func roundedBasisPoints(_ amount: Int64) -> Int64 {
        (amount + 5_000) / 10_000
    }
}

/// Stored with the lot's terms: durations in milliseconds, like the rest of the log.
extension FeeSchedule {
    private enum CodingKeys: String, CodingKey {
        case buyerPremium, sellerCommissionBasisPoints, paymentDeadlineMilliseconds, secondChanceWindowMilliseconds
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            buyerPremium: try container.decode([Tier].self, forKey: .buyerPremium),
            sellerCommissionBasisPoints: try container.decode(Int64.self, forKey: .sellerCommissionBasisPoints),
            paymentDeadline: .milliseconds(try container.decode(Int64.self, forKey: .paymentDeadlineMilliseconds)),
            secondChanceWindow: .milliseconds(
                try container.decode(Int64.self, forKey: .secondChanceWindowMilliseconds)))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(buyerPremium, forKey: .buyerPremium)
        try container.encode(sellerCommissionBasisPoints, forKey: .sellerCommissionBasisPoints)
        try container.encode(paymentDeadline.wholeMilliseconds, forKey: .paymentDeadlineMilliseconds)
        try container.encode(secondChanceWindow.wholeMilliseconds, forKey: .secondChanceWindowMilliseconds)
    }
}

/// The money of one sold lot: what the buyer owes and what the seller receives. Derived amounts
/// are computed, never stored, so they always add up: `total = hammer + buyerPremium` and
/// `sellerPayout + sellerCommission = hammer`.
public struct Invoice: Hashable, Sendable, Codable {
    public var hammer: Money
    public var buyerPremium: Money
    public var sellerCommission: Money

    public init(hammer: Money, buyerPremium: Money, sellerCommission: Money) {
        self.hammer = hammer
        self.buyerPremium = buyerPremium
        self.sellerCommission = sellerCommission
    }

    /// What the buyer pays: the hammer price plus the premium.
    public var total: Money { hammer + buyerPremium }

    /// What the seller receives: the hammer price less the commission.
    public var sellerPayout: Money {
        Money(minorUnits: hammer.minorUnits - sellerCommission.minorUnits, currency: hammer.currency)
    }
}
