import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import Synchronization
import TestSupport
import Testing

@Suite struct RequestTimeoutTests {
    /// A handler that never answers is cut off with a 503 `request_timeout` and is cancelled; one
    /// that answers in time is untouched.
    @Test func aStuckHandler_getsA503AndIsCancelled() async throws {
        let cancelled = CancelledFlag()
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        router.get("/stuck") { _, _ -> String in
            // Waits until cancelled (bounded, in case cancellation never comes).
            try? await Task.sleep(for: .seconds(60))
            cancelled.value.withLock { $0 = Task.isCancelled }
            return "late"
        }
        router.get("/quick") { _, _ -> String in "fine" }
        router.post("/echo") { request, _ -> String in String(buffer: try await request.body.collect(upTo: 1_024)) }
        // Long enough that a quick handler answers in time on a machine busy with the whole suite.
        let app = Application(router: RequestDeadline(router, limit: .seconds(2)))
        try await app.test(.live) { client in
            let stuck = try await client.execute(uri: "/stuck", method: .get)
            #expect(stuck.status == .serviceUnavailable)
            #expect(stuck.headers[.retryAfter] == "1")
            #expect(String(buffer: stuck.body).contains("request_timeout"))
            #expect(String(buffer: stuck.body).contains("longer than 2000 ms"))
            let quick = try await client.execute(uri: "/quick", method: .get)
            #expect(quick.status == .ok)
            #expect(String(buffer: quick.body) == "fine")
            let echo = try await client.execute(uri: "/echo", method: .post, body: ByteBuffer(string: "a body"))
            #expect(String(buffer: echo.body) == "a body", "the body read before routing reaches the handler")
        }
        try await eventually("the stuck handler is cancelled") { cancelled.value.withLock { $0 } }
    }

    /// A handler that ignores cancellation (a call that hangs on a dead connection) still gets its
    /// client a 503 on time, and the connection serves the next request.
    @Test func aHandlerIgnoringCancellation_stillAnswersOnTime() async throws {
        let release = Release()
        let router = Router()
        router.add(middleware: ProblemMiddleware())
        router.get("/hangs") { _, _ -> String in
            await release.wait()
            return "late"
        }
        router.get("/quick") { _, _ -> String in "fine" }
        let app = Application(router: RequestDeadline(router, limit: .seconds(2)))
        try await app.test(.live) { client in
            let started = ContinuousClock.now
            let hung = try await client.execute(uri: "/hangs", method: .get)
            #expect(hung.status == .serviceUnavailable)
            #expect(ContinuousClock.now - started < .seconds(10))
            let quick = try await client.execute(uri: "/quick", method: .get)
            #expect(String(buffer: quick.body) == "fine")
        }
        release.open()
    }
}

private final class CancelledFlag: Sendable {
    let value = Mutex(false)
}

/// A wait that cancellation does not end: only `open()` does.
private final class Release: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiting.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }
}
