import AsyncHTTPClient
public import Foundation
import NIOCore
import NIOHTTP1

/// The few HTTP calls the CLI, `artpay dev`, the chaos runner and the tests make to a node's API.
///
/// Every call has a deadline and goes through one AsyncHTTPClient (``http``), whose requests are
/// cancelled cleanly with the task that awaits them.
public struct APIClient: Sendable {
    public var base: String
    public var token: String?

    public init(base: String, token: String? = nil) {
        self.base = base
        self.token = token
    }

    public struct Failure: Error, CustomStringConvertible, @unchecked Sendable {
        public var status: Int
        public var body: [String: Any]
        public var description: String {
            let code = body["code"] as? String ?? "http_\(status)"
            return "\(code): \(body["detail"] as? String ?? "HTTP \(status)")"
        }
    }

    /// A whole answer: status, the headers the callers read, and the body.
    public struct Answer: Sendable {
        public var status: Int
        public var retryAfter: String?
        public var body: Data
    }

    /// The longest `Retry-After` the client waits out; a longer one is returned as the failure.
    public static let longestRetryAfter: TimeInterval = 10

    /// The client every call and stream of this module goes through. Not `HTTPClient.shared`: its
    /// pool keeps 8 connections per host, and a program that follows many event streams (each holds
    /// a connection for as long as it runs) would leave its calls queued behind them until their
    /// deadlines. Idle connections are closed after 30 s, before a node's own keep-alive limit
    /// (60 s): a connection the node closed while it sat in the pool would fail the next call sent
    /// on it ("I/O on closed channel"). Lives as long as the process.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.connectionPool = .init(
            idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 1_024)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// The largest body a call reads (an export or a metrics page is well below it).
    static let largestBody = 64 << 20

    /// Sends one request and reads the whole answer, all within `timeout` seconds.
    public static func send(
        _ method: String, _ url: String, headers: [String: String] = [:], body: Data? = nil, timeout: TimeInterval
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await http.execute(
            request, timeout: .milliseconds(Int64((timeout * 1_000).rounded(.up))))
        let bytes = try await response.body.collect(upTo: largestBody)
        return Answer(
            status: Int(response.status.code), retryAfter: response.headers.first(name: "Retry-After"),
            body: Data(bytes.readableBytesView))
    }

    /// Sends `json` and returns the decoded JSON object of a 2xx answer, or throws the problem.
    /// A request the node refused before doing any work for it (``RefusedBeforeWork``, with a
    /// `Retry-After` of at most ``longestRetryAfter`` seconds) is sent again after that wait, at
    /// most `retries` times: a node past its capacity sheds load instead of queueing it, and the
    /// shed load must not come straight back.
    @discardableResult
    public func call(
        _ method: String, _ path: String, json: [String: Any]? = nil, timeout: TimeInterval = 10, retries: Int = 3
    ) async throws -> [String: Any] {
        var headers: [String: String] = [:]
        if let token { headers["Authorization"] = "Bearer \(token)" }
        var body: Data?
        if let json {
            headers["Content-Type"] = "application/json"
            body = try JSONSerialization.data(withJSONObject: json)
        }
        var retriesLeft = retries
        while true {
            let answer = try await Self.send(method, base + path, headers: headers, body: body, timeout: timeout)
            let object = (try? JSONSerialization.jsonObject(with: answer.body) as? [String: Any]) ?? [:]
            if (200..<300).contains(answer.status) { return object }
            let failure = Failure(status: answer.status, body: object)
            guard retriesLeft > 0, let wait = Self.retryWait(for: failure, retryAfter: answer.retryAfter)
            else { throw failure }
            retriesLeft -= 1
            try await Task.sleep(for: .milliseconds(Int(wait * 1_000)))
        }
    }

    /// How long to wait before sending a refused request again, or nil when it must not be resent:
    /// only problems in ``RefusedBeforeWork`` with a `Retry-After` in seconds (RFC 9110; the HTTP
    /// date form is not used by the nodes) of at most ``longestRetryAfter``.
    static func retryWait(for failure: Failure, retryAfter: String?) -> TimeInterval? {
        guard [429, 503].contains(failure.status), let code = failure.body["code"] as? String,
            RefusedBeforeWork(rawValue: code) != nil,
            let seconds = retryAfter.flatMap({ TimeInterval($0.trimmingCharacters(in: .whitespaces)) }),
            seconds >= 0, seconds <= longestRetryAfter
        else { return nil }
        return seconds
    }

    /// Logs in and returns a client that carries the token.
    public func loggedIn(_ username: String, _ password: String) async throws -> APIClient {
        let session = try await call("POST", "/v1/sessions", json: ["username": username, "password": password])
        guard let token = session["token"] as? String else { throw Failure(status: 0, body: ["detail": "no token"]) }
        return APIClient(base: base, token: token)
    }
}
