import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

@Suite struct RequestTimeoutTests {
    /// A handler that never answers is cut off with a 503 `request_timeout` and is cancelled; one
    /// that answers in time is untouched.
    @Test func aStuckHandler_getsA503AndIsCancelled() async throws {
        let cancelled = CancelledFlag()
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        router.add(middleware: RequestTimeoutMiddleware(limit: .milliseconds(200)))
        router.get("/stuck") { _, _ -> String in
            // Waits until cancelled (bounded, in case cancellation never comes).
            try? await Task.sleep(for: .seconds(60))
            cancelled.value.withLock { $0 = Task.isCancelled }
            return "late"
        }
        router.get("/quick") { _, _ -> String in "fine" }
        let app = Application(router: router)
        try await app.test(.router) { client in
            let stuck = try await client.execute(uri: "/stuck", method: .get)
            #expect(stuck.status == .serviceUnavailable)
            #expect(stuck.headers[.retryAfter] == "1")
            #expect(String(buffer: stuck.body).contains("request_timeout"))
            let quick = try await client.execute(uri: "/quick", method: .get)
            #expect(quick.status == .ok)
            #expect(String(buffer: quick.body) == "fine")
        }
        #expect(cancelled.value.withLock { $0 })
    }
}

private final class CancelledFlag: Sendable {
    let value = Mutex(false)
}
