import PaymentSandbox
import Testing

/// The sandbox's books: Stripe's idempotency rules and the money states.
@Suite struct SandboxBookTests {
    static let authorize = [
        "amount": "1260", "currency": "eur", "payment_method": "pm_card_visa",
        "capture_method": "manual", "confirm": "true", "metadata[auction]": "lot-1",
    ]

    /// Runs one keyed request as the server does.
    static func call(
        _ book: inout SandboxBook, key: String?, fingerprint: String, now: Int64 = 0,
        _ operation: (inout SandboxBook) -> SandboxBook.Answer
    ) -> SandboxBook.Answer {
        switch book.admit(key: key, fingerprint: fingerprint, now: now) {
        case .replay(let answer): return answer
        case .proceed:
            let answer = operation(&book)
            book.record(answer, for: key)
            return answer
        }
    }

    @Test func sameKeySameParameters_replaysTheSavedAnswer_withoutMovingMoneyAgain() {
        var book = SandboxBook()
        let first = Self.call(&book, key: "k1", fingerprint: "a") { $0.createIntent(Self.authorize, key: "k1", now: 0) }
        let second = Self.call(&book, key: "k1", fingerprint: "a") {
            $0.createIntent(Self.authorize, key: "k1", now: 0)
        }
        #expect(first.status == 200)
        #expect(second.body == first.body)
        #expect(second.replayed)
        #expect(book.ledger.count == 1)
        // A decline is saved too.
        var declined = Self.authorize
        declined["payment_method"] = "pm_card_chargeDeclinedInsufficientFunds"
        let no = Self.call(&book, key: "k2", fingerprint: "b") { $0.createIntent(declined, key: "k2", now: 0) }
        let again = Self.call(&book, key: "k2", fingerprint: "b") { $0.createIntent(declined, key: "k2", now: 0) }
        #expect(no.status == 402)
        #expect(again.status == 402 && again.replayed)
        #expect(book.ledger.map(\.kind) == [.authorization, .decline])
    }

    @Test func sameKeyOtherParameters_is400_inFlightIs409_andKeysExpire() {
        var book = SandboxBook()
        _ = Self.call(&book, key: "k1", fingerprint: "a") { $0.createIntent(Self.authorize, key: "k1", now: 0) }
        let other = Self.call(&book, key: "k1", fingerprint: "b") { _ in
            Issue.record("ran")
            return .init(status: 0, body: [:])
        }
        #expect(other.status == 400)
        #expect(book.admit(key: "k2", fingerprint: "a", now: 0) == .proceed)
        guard case .replay(let busy) = book.admit(key: "k2", fingerprint: "a", now: 1) else {
            Issue.record("a key in flight must not run twice")
            return
        }
        #expect(busy.status == 409)
        // A day later the key is free again (and runs: a second authorization).
        let later = Self.call(&book, key: "k1", fingerprint: "b", now: SandboxBook.keyLifetime) {
            $0.createIntent(Self.authorize, key: "k1", now: SandboxBook.keyLifetime)
        }
        #expect(later.status == 200 && !later.replayed)
    }

    @Test func captureOnce_refundWithinTheCapture_cancelOnlyBeforeCapture() {
        var book = SandboxBook()
        let authorized = book.createIntent(Self.authorize, key: "a", now: 0)
        guard case .string(let id)? = authorized.body["id"] else {
            Issue.record("no id")
            return
        }
        #expect(book.capture(id, [:], key: "c", now: 1).status == 200)
        #expect(book.capture(id, [:], key: "c2", now: 2).status == 400, "captured already")
        #expect(book.cancel(id, key: "x", now: 3).status == 400)
        #expect(book.refund(["payment_intent": id, "amount": "1261"], key: "r1", now: 4).status == 400)
        #expect(book.refund(["payment_intent": id, "amount": "260"], key: "r2", now: 5).status == 200)
        #expect(book.refund(["payment_intent": id, "amount": "1001"], key: "r3", now: 6).status == 400)
        #expect(book.refund(["payment_intent": id], key: "r4", now: 7).status == 200, "the remaining 1,000")
        #expect(book.ledger.map(\.kind) == [.authorization, .capture, .refund, .refund])
        #expect(book.ledger.filter { $0.kind == .refund }.map(\.amount) == [260, 1_000])
        let types = book.takeOutbox().map(\.type)
        #expect(
            types == [
                "payment_intent.amount_capturable_updated", "payment_intent.succeeded", "charge.refunded",
                "charge.refunded",
            ])
    }
}
