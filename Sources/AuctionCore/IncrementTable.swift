/// The bid increment that applies at each price level: the next bid must exceed the current price by
/// at least the increment of the tier the current price falls in.
///
/// Invariants (checked by `init(tiers:)`): the first tier starts at zero, tiers start at strictly
/// increasing prices, every increment is positive, and increments never shrink as prices grow. The
/// last property is what keeps proxy bidding monotonic: a higher price never allows a smaller step.
public struct IncrementTable: Hashable, Sendable, Codable {
    /// One row of the table: from `from` (inclusive, in minor units) the increment is `increment`.
    public struct Tier: Hashable, Sendable, Codable {
        public var from: Int64
        public var increment: Int64

        public init(from: Int64, increment: Int64) {
            self.from = from
            self.increment = increment
        }
    }

    public let tiers: [Tier]

    /// A validated table, or the reason it is not usable.
    public init(tiers: [Tier]) throws(AuctionRejection) {
        guard let first = tiers.first, first.from == 0 else {
            throw .invalidTerms("the increment table must have a first tier starting at 0")
        }
        for (index, tier) in tiers.enumerated() {
            guard tier.increment > 0, tier.increment <= Money.maximumMinorUnits else {
                throw .invalidTerms("every increment must be positive and at most \(Money.maximumMinorUnits)")
            }
            guard tier.from >= 0, tier.from <= Money.maximumMinorUnits else {
                throw .invalidTerms("every tier must start between 0 and \(Money.maximumMinorUnits)")
            }
            if index > 0 {
                let previous = tiers[index - 1]
                guard tier.from > previous.from else {
                    throw .invalidTerms("increment tiers must start at strictly increasing prices")
                }
                guard tier.increment >= previous.increment else {
                    throw .invalidTerms("increments must not shrink as prices grow")
                }
            }
        }
        self.tiers = tiers
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let tiers = try container.decode([Tier].self)
        do {
            try self.init(tiers: tiers)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.message)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(tiers)
    }

    /// The increment at `price` (minor units).
    public func increment(at price: Int64) -> Int64 {
        var result = tiers[0].increment
        for tier in tiers {
            guard tier.from <= price else { break }
            result = tier.increment
        }
        return result
    }

    /// The default table, in the spirit of eBay's: 0.05 under 1.00, rising through 0.25, 0.50, 1,
    /// 2.50, 5, 10, 25, 50 up to 100 from 5,000 — expressed in major units and converted to the
    /// currency's minor unit (never below one minor unit, so JPY steps are whole yen).
    public static func standard(for currency: Currency) -> IncrementTable {
        // (from, increment) in hundredths of a major unit.
        let hundredths: [(Int64, Int64)] = [
            (0, 5), (100, 25), (500, 50), (2_500, 100), (10_000, 250),
            (25_000, 500), (50_000, 1_000), (100_000, 2_500), (250_000, 5_000), (500_000, 10_000),
        ]
        func scaled(_ value: Int64) -> Int64 {
            switch currency.minorUnitDigits {
            case 2: return value
            case let digits where digits > 2:
                var result = value
                for _ in 2..<digits { result *= 10 }
                return result
            default:
                var divisor: Int64 = 1
                for _ in currency.minorUnitDigits..<2 { divisor *= 10 }
                return value / divisor
            }
        }
        var tiers: [Tier] = []
        for (from, increment) in hundredths {
            let tier = Tier(from: scaled(from), increment: max(1, scaled(increment)))
            if let last = tiers.last, last.from == tier.from {
                tiers[tiers.count - 1] = tier
            } else {
                tiers.append(tier)
            }
        }
        // The table above satisfies every invariant for each supported currency.
        return try! IncrementTable(tiers: tiers)
    }
}
