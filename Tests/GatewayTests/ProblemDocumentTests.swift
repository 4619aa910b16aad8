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
