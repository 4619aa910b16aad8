import AuctionCore
import Testing

/// Text limits are in UTF-8 bytes, the unit the store and the wire share.
@Suite struct TextLimitsTests {
    static func terms(title: String) -> AuctionTerms {
        AuctionTerms(
            auctionId: AuctionID(rawValue: "lot")!, sellerId: UserID(rawValue: "s")!, title: title,
            startingPrice: Money(minorUnits: 100, currency: .eur), opensAt: Timestamp(millisecondsSinceEpoch: 0),
            closesAt: Timestamp(millisecondsSinceEpoch: 10_000))
    }

    static func accepts(_ title: String) -> Bool {
        do {
            try terms(title: title).validate(now: Timestamp(millisecondsSinceEpoch: 1))
            return true
        } catch {
            return false
        }
    }

    @Test func titles_areLimitedInBytes_notCharacters() {
        // One character of 65,401 bytes (a letter with 32,700 combining marks) passed a limit in
        // characters and then did not fit the wire.
        let oneHugeCharacter = "a" + String(repeating: "\u{301}", count: 32_700)
        #expect(oneHugeCharacter.count == 1)
        #expect(!Self.accepts(oneHugeCharacter))
        #expect(!Self.accepts(String(repeating: "🎨", count: 1_250)), "5,000 bytes")
        #expect(Self.accepts(String(repeating: "🎨", count: 128)), "exactly 512 bytes")
        #expect(!Self.accepts(String(repeating: "🎨", count: 128) + "a"), "513 bytes")
        #expect(!Self.accepts("   "))
        #expect(!Self.accepts("Blue\u{0}Study"))
        #expect(!Self.accepts("Blue\nStudy"))
        #expect(Self.accepts("Untitled (Blue Study), oil on canvas — 1962"))
    }

    @Test func cancelReasons_areLimitedInBytes() {
        #expect(throws: Never.self) { try Auction.validateCancelReason(String(repeating: "é", count: 500)) }
        #expect(throws: AuctionRejection.self) { try Auction.validateCancelReason(String(repeating: "é", count: 501)) }
        #expect(throws: AuctionRejection.self) { try Auction.validateCancelReason("") }
    }

    @Test func everyLimit_fitsTheWire() {
        #expect(TextLimits.titleBytes <= TextLimits.wireTextBytes)
        #expect(TextLimits.cancelReasonBytes <= TextLimits.wireTextBytes)
    }

    @Test func truncation_neverCutsInsideACharacter() {
        let text = String(repeating: "🎨", count: 300)
        for limit in [0, 1, 3, 4, 5, 1_023, 1_024] {
            let cut = TextLimits.truncated(text, maximumBytes: limit)
            #expect(cut.utf8.count <= limit)
            #expect(cut.utf8.count == (limit / 4) * 4, "whole characters only, as many as fit")
        }
        #expect(TextLimits.truncated("short", maximumBytes: 1_024) == "short")
    }
}

@Suite struct IdentifierRuleTests {
    @Test func identifiersOfOnlyDots_areRefused() {
        for raw in [".", "..", "..."] { #expect(AuctionID(rawValue: raw) == nil, "\(raw)") }
        for raw in ["a.b", ".a", "a..", "lot-1:2"] { #expect(AuctionID(rawValue: raw) != nil, "\(raw)") }
    }
}
