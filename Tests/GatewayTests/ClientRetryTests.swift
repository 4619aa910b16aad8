import ArtPayClient
import Foundation
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing

/// The project's client waits out a refusal the node made before doing any work (503
/// `overloaded`, 429 `rate_limited`) and sends the request again; it never resends one the node may
/// have worked on (503 `request_timeout`), and it gives up after its retries.
@Suite struct ClientRetryTests {
    /// Answers each path's scripted problems in turn, then 200; counts the calls per path.
    private final class Script: Sendable {
        let calls = Mutex<[String: Int]>([:])
        let problems: [String: [(status: HTTPResponse.Status, code: String, retryAfter: String?)]]

        init(_ problems: [String: [(status: HTTPResponse.Status, code: String, retryAfter: String?)]]) {
            self.problems = problems
        }

        func answer(_ path: String) -> Response {
            let call = calls.withLock { calls in
                calls[path, default: 0] += 1
                return calls[path]! - 1
            }
            let scripted = problems[path] ?? []
            guard call < scripted.count else {
                return Response(
                    status: .ok, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(string: #"{"ok":true}"#)))
            }
            let problem = scripted[call]
            var headers: HTTPFields = [.contentType: "application/problem+json"]
            if let retryAfter = problem.retryAfter { headers[.retryAfter] = retryAfter }
            return Response(
                status: problem.status, headers: headers,
                body: .init(byteBuffer: ByteBuffer(string: #"{"code":"\#(problem.code)","detail":"scripted"}"#)))
        }

        func count(_ path: String) -> Int { calls.withLock { $0[path, default: 0] } }
    }

    @Test func refusalsBeforeWork_areWaitedOutAndResent_othersAreNot() async throws {
        let script = Script([
            "/shed": [(.serviceUnavailable, "overloaded", "0"), (.tooManyRequests, "rate_limited", "1")],
            "/maybe-done": [(.serviceUnavailable, "request_timeout", "0")],
            "/no-wait-named": [(.serviceUnavailable, "overloaded", nil)],
            "/too-long": [(.serviceUnavailable, "overloaded", "3600")],
            "/always": Array(repeating: (.serviceUnavailable, "overloaded", "0"), count: 10),
        ])
        let router = Router()
        for path in ["/shed", "/maybe-done", "/no-wait-named", "/too-long", "/always"] {
            router.post(RouterPath(path)) { _, _ in script.answer(path) }
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let api = APIClient(base: "http://127.0.0.1:\(try #require(client.port))")
            let started = ContinuousClock.now
            let answer = try await api.call("POST", "/shed", json: ["bidId": "b-1"])
            #expect(answer["ok"] as? Bool == true)
            #expect(script.count("/shed") == 3, "two refusals waited out, then the answer")
            #expect(ContinuousClock.now - started >= .seconds(1), "the 1 s Retry-After was waited out")

            for path in ["/maybe-done", "/no-wait-named", "/too-long"] {
                await #expect(throws: APIClient.Failure.self, "\(path) is not resent") {
                    try await api.call("POST", path, json: [:])
                }
                #expect(script.count(path) == 1, "\(path) was sent once")
            }
            await #expect(throws: APIClient.Failure.self) {
                try await api.call("POST", "/always", json: [:], retries: 2)
            }
            #expect(script.count("/always") == 3, "the first try and two retries")
        }
    }
}
