import Foundation
import Hummingbird
import HummingbirdTesting
import Prometheus
import Synchronization
import TestSupport
import Testing

@testable import Gateway

/// Past its cap a node refuses fast instead of queueing: places go first come, first served, a
/// waiter gets a freed place within its wait, and everyone else a 503 with Retry-After.
@Suite struct AdmissionControlTests {
    /// A control with its own registry, and its `/metrics` text.
    static func control(_ limits: AdmissionLimits) -> (AdmissionControl, @Sendable () -> String) {
        let registry = PrometheusCollectorRegistry()
        let control = AdmissionControl(limits: limits, registry: registry)
        return (
            control,
            {
                control.updateGauges()
                return registry.emitToString()
            }
        )
    }

    @Test func aFreedPlace_goesToTheOldestWaiter() async throws {
        let (control, metricsText) = Self.control(
            .init(maximumInFlight: 2, maximumWait: .seconds(30), maximumWaiting: 8))
        #expect(await control.admit())
        #expect(await control.admit())
        let waiter = Task { await control.admit() }
        try await eventually("the third one waits") {
            metricsText().contains("artpay_http_admission_waiting 1")
        }
        control.release()
        #expect(await waiter.value)
        #expect(metricsText().contains("artpay_http_in_flight 2"))
    }

    @Test func aWaiterWithoutAPlace_isRefusedAfterItsWait_andAFullQueueAtOnce() async throws {
        let (control, metricsText) = Self.control(
            .init(maximumInFlight: 1, maximumWait: .seconds(2), maximumWaiting: 1))
        #expect(await control.admit())
        let waiter = Task { await control.admit() }
        try await eventually("one waits") {
            metricsText().contains("artpay_http_admission_waiting 1")
        }
        #expect(await control.admit() == false, "the queue is full: refused without waiting")
        #expect(await waiter.value == false, "no place within its wait")
        let text = metricsText()
        #expect(text.contains(#"artpay_http_shed_total{reason="wait_expired"} 1"#))
        #expect(text.contains(#"artpay_http_shed_total{reason="queue_full"} 1"#))
        control.release()
        #expect(await control.admit(), "the place is free again")
    }

    @Test func overTheCap_theAPIAnswers503Overloaded_withRetryAfter_whileHealthStillAnswers() async throws {
        let (control, metricsText) = Self.control(
            .init(maximumInFlight: 1, maximumWait: .milliseconds(20), maximumWaiting: 4))
        let gate = AsyncStream.makeStream(of: Void.self)
        let router = Router()
        router.get("/health/live") { _, _ in HTTPResponse.Status.ok }
        router.group("/v1").add(middleware: AdmissionMiddleware(control: control)).add(middleware: ProblemMiddleware())
            .get("/slow") { _, _ -> HTTPResponse.Status in
                for await _ in gate.stream { break }
                return .ok
            }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            // The test client has one connection: the slow request goes on a connection of its own.
            let slow = try await RawConnection.open(port: try #require(client.port), from: "127.0.0.1")
            slow.send("GET /v1/slow HTTP/1.1\r\nHost: x\r\n\r\n")
            try await eventually("the slow one holds the place") {
                metricsText().contains("artpay_http_in_flight 1")
            }
            let refused = try await client.execute(uri: "/v1/slow", method: .get)
            #expect(refused.status == .serviceUnavailable)
            #expect(refused.headers[.retryAfter] == "1")
            #expect(String(buffer: refused.body).contains("overloaded"))
            #expect(try await client.execute(uri: "/health/live", method: .get).status == .ok)
            gate.continuation.yield()
            try await eventually("the slow one is answered") { slow.text.hasPrefix("HTTP/1.1 200") }
            slow.close()
        }
    }
}

/// A cluster-wide rate limit: each of N gateway nodes charges N tokens per request, so a caller
/// spreading requests over every node gets the policy's rate in total.
@Suite struct ClusterRateLimitTests {
    @Test func withThreeGateways_eachRequestCostsThreeTokens() {
        let start = ContinuousClock.now
        var bucket = TokenBucket(capacity: 9, refillPerSecond: 3, now: start)
        let taken = (0..<5).map { _ in bucket.take(now: start, cost: 3) }
        #expect(taken.map(\.allowed) == [true, true, true, false, false])
        #expect(taken[0].remaining == 2)
        #expect(taken[3].retryAfterSeconds == 1, "3 tokens come back in a second")
        #expect(bucket.take(now: start.advanced(by: .seconds(1)), cost: 3).allowed)
    }

    @Test func aCostAboveTheCapacity_stillLetsTheCapacityThrough() {
        let start = ContinuousClock.now
        var bucket = TokenBucket(capacity: 2, refillPerSecond: 1, now: start)
        #expect(bucket.take(now: start, cost: 5).allowed, "more gateways than the burst: one request at a time")
        #expect(!bucket.take(now: start, cost: 5).allowed)
    }
}
