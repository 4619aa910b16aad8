/// An amount of money: integer minor units of one currency. Never a floating-point number.
///
/// Invariant: arithmetic and comparison only combine amounts of the same currency. The auction
/// state machine refuses a foreign currency at its boundary, so inside an auction every `Money`
/// shares the auction's currency; combining two currencies is a programming error and traps.
public struct Money: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The amount in the currency's minor unit (cents for USD, yen for JPY).
    public var minorUnits: Int64
    public var currency: Currency

    /// The largest amount the engine accepts in any bid or price: 10^15 minor units, so that sums of a
    /// price and an increment can never overflow `Int64`.
    public static let maximumMinorUnits: Int64 = 1_000_000_000_000_000

    public init(minorUnits: Int64, currency: Currency) {
        self.minorUnits = minorUnits
        self.currency = currency
    }

    public static func zero(_ currency: Currency) -> Money { Money(minorUnits: 0, currency: currency) }

    /// "1234.50 USD", exact, with the currency's number of decimals.
    public var description: String {
        let digits = currency.minorUnitDigits
        let sign = minorUnits < 0 ? "-" : ""
        let magnitude = minorUnits.magnitude
        guard digits > 0 else { return "\(sign)\(magnitude) \(currency.code)" }
        let scale = UInt64(currency.minorUnitsPerMajorUnit)
        var fraction = String(magnitude % scale)
        while fraction.count < digits { fraction = "0" + fraction }
        return "\(sign)\(magnitude / scale).\(fraction) \(currency.code)"
    }

    public static func + (lhs: Money, rhs: Money) -> Money {
        precondition(lhs.currency == rhs.currency, "adding \(lhs.currency) to \(rhs.currency)")
        return Money(minorUnits: lhs.minorUnits + rhs.minorUnits, currency: lhs.currency)
    }
}

extension Money: Comparable {
    public static func < (lhs: Money, rhs: Money) -> Bool {
        precondition(lhs.currency == rhs.currency, "comparing \(lhs.currency) with \(rhs.currency)")
        return lhs.minorUnits < rhs.minorUnits
    }
}
