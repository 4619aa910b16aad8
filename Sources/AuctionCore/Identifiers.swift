/// A validated identifier of one kind of thing (auction, user, bid, sale).
///
/// Why one generic type: every identifier follows the same rule, 1 to 64 characters of
/// `A–Z a–z 0–9 _ - . :`, not only dots — bounded and printable, so safe as a log field, URL path
/// segment and database key without escaping (`.` and `..` would be resolved away as path
/// segments, leaving the thing unreachable) — while the phantom `Kind` keeps a bid id from being
/// passed where an auction id is expected.
public struct Identifier<Kind: IdentifierKind>: RawRepresentable, Hashable, Sendable, Codable, Comparable,
    CustomStringConvertible
{
    public static var maximumLength: Int { 64 }

    public let rawValue: String

    /// The identifier, or nil when `rawValue` breaks the rule above.
    public init?(rawValue: String) {
        guard Self.isValid(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public static func isValid(_ raw: String) -> Bool {
        guard !raw.isEmpty, raw.utf8.count <= maximumLength, !raw.utf8.allSatisfy({ $0 == UInt8(ascii: ".") })
        else { return false }
        return raw.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: ":"):
                return true
            default:
                return false
            }
        }
    }
}

/// The marker of one kind of identifier; it has no values.
public protocol IdentifierKind: Sendable {}

public enum AuctionKind: IdentifierKind {}
public enum UserKind: IdentifierKind {}
public enum BidKind: IdentifierKind {}
public enum SaleKind: IdentifierKind {}

/// One auction (one lot on sale). Auctions hash into shards by this id.
public typealias AuctionID = Identifier<AuctionKind>
/// A user: a bidder, a seller or an admin.
public typealias UserID = Identifier<UserKind>
/// The client-chosen id of one bid. Resubmitting a bid with the same id is idempotent
/// (invariant 5): the engine answers with the original acceptance and records nothing new.
public typealias BidID = Identifier<BidKind>
/// A sale: a group of auctions run together (an evening sale of one house).
public typealias SaleID = Identifier<SaleKind>
