import AuctionCore
import Foundation
import Testing

@testable import Gateway

/// The problem+json document is written by hand (it is most answers on a busy lot): it must be
/// valid JSON with every field, whatever characters the detail holds.
@Suite struct ProblemDocumentTests {
    @Test func problemDocument_isValidJSON_withEveryField_andSortedKeys() throws {
        let detail = "quote \" backslash \\ newline \n tab \t bell \u{07} nul \u{00} emoji 🎨 é"
        let error = APIError(
            .unprocessableContent, code: "below_minimum", detail: detail,
            extra: ["minimum": "12500", "currency": "EUR", "z\"odd": "x"])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(error.json.utf8)) as? [String: Any])
        #expect(object["detail"] as? String == detail)
        #expect(object["status"] as? Int == 422)
        #expect(object["code"] as? String == "below_minimum")
        #expect(object["minimum"] as? String == "12500")
        #expect(object["currency"] as? String == "EUR")
        #expect(object["z\"odd"] as? String == "x")
        #expect(object["type"] as? String == "https://artpay.dev/problems/below_minimum")
        #expect(object["title"] as? String == "Unprocessable Content")
        let keys = error.json.split(separator: ",").compactMap { $0.split(separator: ":").first }
        #expect(keys.first == "{\"code\"")
    }
}

/// API timestamps are formatted by hand: the same date and time as Foundation's ISO 8601 style,
/// and milliseconds exact (Foundation's, through a Double, sometimes read one lower).
@Suite struct TimestampFormatTests {
    @Test func format_matchesFoundationsISO8601() {
        var generator = SystemRandomNumberGenerator()
        var samples: [Int64] = [0, 1, 999, 86_399_999, 86_400_000, 951_782_400_000, 1_798_761_599_999, 4_102_444_800_000]
        for _ in 0..<2_000 { samples.append(Int64.random(in: 0...4_102_444_800_000, using: &generator)) }
        for milliseconds in samples {
            let date = Date(timeIntervalSince1970: Double(milliseconds) / 1_000)
            let expected = date.formatted(
                .iso8601.year().month().day().timeZone(separator: .omitted).time(includingFractionalSeconds: true)
                    .timeSeparator(.colon).dateSeparator(.dash))
            let formatted = Timestamps.format(Timestamp(millisecondsSinceEpoch: milliseconds))
            #expect(formatted.prefix(20) == expected.prefix(20), "\(milliseconds)")
            #expect(formatted.count == 24 && formatted.hasSuffix("Z"))
            #expect(Timestamps.parse(formatted)?.millisecondsSinceEpoch == milliseconds)
        }
    }
}
