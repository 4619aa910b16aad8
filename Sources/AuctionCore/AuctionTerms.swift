/// What a seller (or admin) fixes when an auction is created; immutable afterwards.
///
/// Invariant (checked by `validate(now:)` before a `created` event is ever decided): all prices are
/// in `currency`, positive and within `Money.maximumMinorUnits`; the reserve is not below the
/// starting price; a buy-now price is above the starting price and not below the reserve; the
/// auction opens before it closes; the extension window is between 0 and one day.
public struct AuctionTerms: Hashable, Sendable, Codable {
    public var auctionId: AuctionID
    public var sellerId: UserID
    public var saleId: SaleID?
    public var title: String
    public var currency: Currency
    public var startingPrice: Money
    /// Hidden from bidders: below it the lot is not sold.
    public var reservePrice: Money?
    public var buyNowPrice: Money?
    public var opensAt: Timestamp
    public var closesAt: Timestamp
    /// Soft close: a bid accepted less than this before the end moves the end to `now + window`.
    /// Zero turns soft close off.
    public var extensionWindow: Duration
    public var increments: IncrementTable
    /// The money rules the lot is sold under (buyer's premium, commission, payment deadline): fixed
    /// with the lot, so a later change of the house's schedule never changes a sold lot's invoice.
    /// Logs written before fees existed read as `FeeSchedule.standard`.
    public var fees: FeeSchedule

    public static let defaultExtensionWindow: Duration = .seconds(120)
    public static let maximumExtensionWindow: Duration = .seconds(86_400)

    public init(
        auctionId: AuctionID,
        sellerId: UserID,
        saleId: SaleID? = nil,
        title: String,
        startingPrice: Money,
        reservePrice: Money? = nil,
        buyNowPrice: Money? = nil,
        opensAt: Timestamp,
        closesAt: Timestamp,
        extensionWindow: Duration = AuctionTerms.defaultExtensionWindow,
        increments: IncrementTable? = nil,
        fees: FeeSchedule = .standard
    ) {
        self.auctionId = auctionId
        self.sellerId = sellerId
        self.saleId = saleId
        self.title = title
        self.currency = startingPrice.currency
        self.startingPrice = startingPrice
        self.reservePrice = reservePrice
        self.buyNowPrice = buyNowPrice
        self.opensAt = opensAt
        self.closesAt = closesAt
        self.extensionWindow = extensionWindow
        self.increments = increments ?? .standard(for: startingPrice.currency)
        self.fees = fees
    }

    /// Checks the invariant above for an auction created at `now`.
    public func validate(now: Timestamp) throws(AuctionRejection) {
        guard TextLimits.isAcceptable(title, maximumBytes: TextLimits.titleBytes) else {
            throw .invalidTerms(
                "the title must have 1 to \(TextLimits.titleBytes) bytes of UTF-8 and no control characters")
        }
        for (name, price) in [
            ("startingPrice", startingPrice), ("reservePrice", reservePrice),
            ("buyNowPrice", buyNowPrice),
        ] {
            guard let price else { continue }
            guard price.currency == currency else { throw .invalidTerms("\(name) must be in \(currency.code)") }
            guard price.minorUnits > 0, price.minorUnits <= Money.maximumMinorUnits else {
                throw .invalidTerms("\(name) must be positive and at most \(Money.maximumMinorUnits) minor units")
            }
        }
        if let reservePrice, reservePrice < startingPrice {
            throw .invalidTerms("reservePrice must not be below startingPrice")
        }
        if let buyNowPrice {
            guard buyNowPrice > startingPrice else { throw .invalidTerms("buyNowPrice must exceed startingPrice") }
            if let reservePrice, buyNowPrice < reservePrice {
                throw .invalidTerms("buyNowPrice must not be below reservePrice")
            }
        }
        guard opensAt < closesAt else { throw .invalidTerms("opensAt must be before closesAt") }
        guard now < closesAt else { throw .invalidTerms("closesAt must be in the future") }
        guard extensionWindow >= .zero, extensionWindow <= Self.maximumExtensionWindow else {
            throw .invalidTerms("extensionWindow must be between 0 and 86400 seconds")
        }
        do {
            try fees.validate()
        } catch {
            throw .invalidTerms("fees: \(error)")
        }
    }

    private enum CodingKeys: String, CodingKey {
        case auctionId, sellerId, saleId, title, currency, startingPrice, reservePrice, buyNowPrice
        case opensAt, closesAt, extensionWindowMilliseconds, increments, fees
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        auctionId = try container.decode(AuctionID.self, forKey: .auctionId)
        sellerId = try container.decode(UserID.self, forKey: .sellerId)
        saleId = try container.decodeIfPresent(SaleID.self, forKey: .saleId)
        title = try container.decode(String.self, forKey: .title)
        currency = try container.decode(Currency.self, forKey: .currency)
        startingPrice = try container.decode(Money.self, forKey: .startingPrice)
        reservePrice = try container.decodeIfPresent(Money.self, forKey: .reservePrice)
        buyNowPrice = try container.decodeIfPresent(Money.self, forKey: .buyNowPrice)
        opensAt = try container.decode(Timestamp.self, forKey: .opensAt)
        closesAt = try container.decode(Timestamp.self, forKey: .closesAt)
        extensionWindow = .milliseconds(try container.decode(Int64.self, forKey: .extensionWindowMilliseconds))
        increments = try container.decode(IncrementTable.self, forKey: .increments)
        fees = try container.decodeIfPresent(FeeSchedule.self, forKey: .fees) ?? .standard
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(auctionId, forKey: .auctionId)
        try container.encode(sellerId, forKey: .sellerId)
        try container.encodeIfPresent(saleId, forKey: .saleId)
        try container.encode(title, forKey: .title)
        try container.encode(currency, forKey: .currency)
        try container.encode(startingPrice, forKey: .startingPrice)
        try container.encodeIfPresent(reservePrice, forKey: .reservePrice)
        try container.encodeIfPresent(buyNowPrice, forKey: .buyNowPrice)
        try container.encode(opensAt, forKey: .opensAt)
        try container.encode(closesAt, forKey: .closesAt)
        try container.encode(extensionWindow.wholeMilliseconds, forKey: .extensionWindowMilliseconds)
        try container.encode(increments, forKey: .increments)
        try container.encode(fees, forKey: .fees)
    }
}
