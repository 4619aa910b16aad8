/// An ISO 4217 currency the engine accepts, with the number of minor-unit digits it uses.
///
/// Why a closed list: amounts are stored as integer minor units, so the engine must know each
/// currency's exponent exactly (JPY has none, BHD has three). A code the engine does not know is
/// refused at the boundary instead of being guessed.
public struct Currency: Hashable, Sendable, CustomStringConvertible {
    /// The three-letter ISO 4217 code, upper case.
    public let code: String
    /// How many decimal digits the minor unit has (2 for USD: 1 dollar = 100 cents).
    public let minorUnitDigits: Int

    private init(code: String, minorUnitDigits: Int) {
        self.code = code
        self.minorUnitDigits = minorUnitDigits
    }

    public static let usd = Currency(code: "USD", minorUnitDigits: 2)
    public static let eur = Currency(code: "EUR", minorUnitDigits: 2)
    public static let gbp = Currency(code: "GBP", minorUnitDigits: 2)
    public static let chf = Currency(code: "CHF", minorUnitDigits: 2)
    public static let hkd = Currency(code: "HKD", minorUnitDigits: 2)
    public static let cny = Currency(code: "CNY", minorUnitDigits: 2)
    public static let cad = Currency(code: "CAD", minorUnitDigits: 2)
    public static let aud = Currency(code: "AUD", minorUnitDigits: 2)
    public static let sgd = Currency(code: "SGD", minorUnitDigits: 2)
    public static let sek = Currency(code: "SEK", minorUnitDigits: 2)
    public static let jpy = Currency(code: "JPY", minorUnitDigits: 0)
    public static let krw = Currency(code: "KRW", minorUnitDigits: 0)
    public static let bhd = Currency(code: "BHD", minorUnitDigits: 3)
    public static let kwd = Currency(code: "KWD", minorUnitDigits: 3)

    /// Every currency the engine accepts.
    public static let supported: [Currency] = [
        .usd, .eur, .gbp, .chf, .hkd, .cny, .cad, .aud, .sgd, .sek, .jpy, .krw, .bhd, .kwd,
    ]

    /// The supported currency with this ISO code, or nil when the engine does not accept it.
    public init?(code: String) {
        guard let known = Currency.supported.first(where: { $0.code == code }) else { return nil }
        self = known
    }

    /// `10^minorUnitDigits`: how many minor units one major unit has.
    public var minorUnitsPerMajorUnit: Int64 {
        var result: Int64 = 1
        for _ in 0..<minorUnitDigits { result *= 10 }
        return result
    }

    public var description: String { code }
}

extension Currency: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let code = try container.decode(String.self)
        guard let currency = Currency(code: code) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "unsupported currency code '\(code)'")
        }
        self = currency
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(code)
    }
}
