import Payments
import Testing

@Suite struct WebhookSignatureTests {
    let body = Array(#"{"id":"evt_1","type":"payment_intent.succeeded"}"#.utf8)

    @Test func aSignedBody_verifies_withinTheTolerance_andWithARotatedSecret() throws {
        let header = WebhookSignature.sign(body, secret: "whsec_new", at: 1_000_000)
        try WebhookSignature.verify(body, headerValue: header, secrets: ["whsec_new"], now: 1_000_299)
        try WebhookSignature.verify(body, headerValue: header, secrets: ["whsec_old", "whsec_new"], now: 1_000_000)
        // A header with two v1 entries (the provider signing with old and new secrets).
        let old = WebhookSignature.sign(body, secret: "whsec_old", at: 1_000_000)
        let both = header + "," + old.split(separator: ",")[1]
        try WebhookSignature.verify(body, headerValue: both, secrets: ["whsec_old"], now: 1_000_000)
    }

    @Test func forgedStaleOrMalformedSignatures_areRefused() {
        let header = WebhookSignature.sign(body, secret: "whsec_a", at: 1_000_000)
        #expect(throws: WebhookSignature.Failure.noMatchingSignature) {
            try WebhookSignature.verify(body, headerValue: header, secrets: ["whsec_b"], now: 1_000_000)
        }
        #expect(throws: WebhookSignature.Failure.noMatchingSignature) {
            try WebhookSignature.verify(body + [0x20], headerValue: header, secrets: ["whsec_a"], now: 1_000_000)
        }
        #expect(throws: WebhookSignature.Failure.outsideTolerance(signedAt: 1_000_000, now: 1_000_301)) {
            try WebhookSignature.verify(body, headerValue: header, secrets: ["whsec_a"], now: 1_000_301)
        }
        #expect(throws: WebhookSignature.Failure.missingHeader) {
            try WebhookSignature.verify(body, headerValue: nil, secrets: ["whsec_a"], now: 1_000_000)
        }
        #expect(throws: WebhookSignature.Failure.malformedHeader) {
            try WebhookSignature.verify(body, headerValue: "v1=abc", secrets: ["whsec_a"], now: 1_000_000)
        }
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replacingOccurrences(of: "t=1000000", with: "t=1000100")
        #expect(throws: WebhookSignature.Failure.noMatchingSignature) {
            try WebhookSignature.verify(body, headerValue: moved, secrets: ["whsec_a"], now: 1_000_100)
        }
    }

    @Test func formEncoding_roundTrips() {
        let fields = [("amount", "1260"), ("metadata[auction]", "lot 42/a&b=c")]
        let decoded = FormEncoding.decode(FormEncoding.encode(fields))
        #expect(decoded == ["amount": "1260", "metadata[auction]": "lot 42/a&b=c"])
    }
}
