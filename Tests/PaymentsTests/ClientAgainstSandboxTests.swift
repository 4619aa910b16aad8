import AsyncHTTPClient
import AuctionCore
import Hummingbird
import HummingbirdTesting
import PaymentSandbox
import Payments
import Testing

/// The Stripe-shaped client against the sandbox over real HTTP, with the sandbox's faults: every
/// fault leaves one money movement per key, and a retry with the same key learns the outcome.
@Suite struct ClientAgainstSandboxTests {
    static func eur(_ cents: Int64) -> Money { Money(minorUnits: cents, currency: .eur) }
    static let visa = PaymentMethodID(rawValue: "pm_card_visa")!

    /// Runs `body` with a sandbox on a free port and a client of it (deadline `timeout`).
    static func withSandbox(
        faults: SandboxFaults = .init(), timeout: Duration = .seconds(5),
        _ body: @Sendable (SandboxProvider, StripeShapedClient) async throws -> Void
    ) async throws {
        let sandbox = SandboxProvider(secretKey: "sk_test_1", faults: faults, seed: 7)
        let app = Application(router: sandbox.router())
        try await app.test(.live) { client in
            let port = try #require(client.port)
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let provider = StripeShapedClient(
                baseURL: "http://127.0.0.1:\(port)", secretKey: "sk_test_1", http: http, timeout: timeout)
            do {
                try await body(sandbox, provider)
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    @Test func authorizeCaptureRefund_andADecline() async throws {
        try await Self.withSandbox { sandbox, provider in
            let intent = try await provider.authorize(
                amount: Self.eur(1_260), paymentMethod: Self.visa, key: "settle:lot-1:1:authorize",
                metadata: ["auction": "lot-1"])
            #expect(intent.status == "requires_capture")
            #expect(intent.amountCapturable == 1_260)
            let id = try #require(PaymentIntentID(rawValue: intent.id))
            let captured = try await provider.capture(
                intent: id, amount: Self.eur(1_260), key: "settle:lot-1:2:capture")
            #expect(captured.status == "succeeded")
            let refund = try await provider.refund(intent: id, amount: Self.eur(260), key: "settle:lot-1:3:refund")
            #expect(refund.amount == 260)
            await #expect(throws: ProviderError.self) {
                _ = try await provider.refund(intent: id, amount: Self.eur(1_001), key: "settle:lot-1:4:refund")
            }
            do throws(ProviderError) {
                _ = try await provider.authorize(
                    amount: Self.eur(1_260), paymentMethod: PaymentMethodID(rawValue: "pm_card_chargeDeclined")!,
                    key: "settle:lot-2:1:authorize", metadata: [:])
                Issue.record("a declining card authorized")
            } catch {
                #expect(error == .declined(code: "generic_decline", message: "Your card was declined."))
                #expect(error.breakerResult == .answered, "a decline never counts against the provider")
            }
            #expect(sandbox.ledger.map(\.kind) == [.authorization, .capture, .refund, .decline])
            let retrieved = try await provider.retrieve(intent: id)
            #expect(retrieved.amountReceived == 1_260)
        }
    }

    @Test func aLostAnswer_isRecoveredByTheSameKey_withoutASecondCharge() async throws {
        var faults = SandboxFaults()
        faults.errorAfterRate = 1
        try await Self.withSandbox(faults: faults) { sandbox, provider in
            let key = "settle:lot-1:1:authorize"
            do throws(ProviderError) {
                _ = try await provider.authorize(
                    amount: Self.eur(500), paymentMethod: Self.visa, key: key, metadata: [:])
                Issue.record("the fault did not fire")
            } catch {
                #expect(error == .serverError(status: 500))
                #expect(error.isRetryable)
            }
            sandbox.currentFaults = SandboxFaults()
            let retried = try await provider.authorize(
                amount: Self.eur(500), paymentMethod: Self.visa, key: key, metadata: [:])
            #expect(retried.status == "requires_capture")
            #expect(sandbox.ledger.count == 1, "one authorization for one key")
            // The same key with another amount is our bug, never retried.
            do throws(ProviderError) {
                _ = try await provider.authorize(
                    amount: Self.eur(501), paymentMethod: Self.visa, key: key, metadata: [:])
                Issue.record("a reused key with other parameters went through")
            } catch {
                guard case .idempotencyConflict = error else {
                    Issue.record("expected an idempotency conflict, got \(error)")
                    return
                }
            }
        }
    }

    @Test func aChargeWithoutAnAnswer_timesOut_andTheRetryLearnsIt() async throws {
        var faults = SandboxFaults()
        faults.timeoutAfterChargeRate = 1
        faults.hangMilliseconds = 5_000
        // The client's deadline must leave the request time to reach the sandbox (300 ms did not,
        // once, on a machine busy with the whole suite: the charge never happened); the sandbox then
        // holds its answer well past it.
        try await Self.withSandbox(faults: faults, timeout: .seconds(2)) { sandbox, provider in
            let key = "settle:lot-9:1:authorize"
            do throws(ProviderError) {
                _ = try await provider.authorize(
                    amount: Self.eur(700), paymentMethod: Self.visa, key: key, metadata: [:])
                Issue.record("the fault did not fire")
            } catch {
                #expect(error == .timedOut)
                #expect(error.breakerResult == .timedOut)
            }
            #expect(sandbox.ledger.count == 1, "the charge happened")
            sandbox.currentFaults = SandboxFaults()
            // Resent with the same key until an answer comes, as the settlement driver does (the
            // deadline can pass again on a machine starved by the rest of the suite).
            var retried: PaymentIntent?
            let deadline = ContinuousClock.now + .seconds(30)
            while retried == nil, ContinuousClock.now < deadline {
                do throws(ProviderError) {
                    retried = try await provider.authorize(
                        amount: Self.eur(700), paymentMethod: Self.visa, key: key, metadata: [:])
                } catch {
                    #expect(error == .timedOut, "only deadlines may interrupt the retry: \(error)")
                }
            }
            #expect(retried?.amountCapturable == 700)
            #expect(sandbox.ledger.count == 1, "and only once")
        }
    }

    @Test func throttlingAndOutages_areRetryableFailures() async throws {
        var faults = SandboxFaults()
        faults.rateLimitRate = 1
        try await Self.withSandbox(faults: faults) { sandbox, provider in
            do throws(ProviderError) {
                _ = try await provider.authorize(amount: Self.eur(1), paymentMethod: Self.visa, key: "k", metadata: [:])
            } catch {
                #expect(error == .rateLimited(retryAfterSeconds: 1))
            }
            var outage = SandboxFaults()
            outage.outageUntilMilliseconds = Int64.max
            sandbox.currentFaults = outage
            do throws(ProviderError) {
                _ = try await provider.authorize(amount: Self.eur(1), paymentMethod: Self.visa, key: "k", metadata: [:])
            } catch {
                #expect(error == .serverError(status: 503))
            }
            #expect(sandbox.ledger.isEmpty)
        }
    }
}
