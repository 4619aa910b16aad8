public import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The few HTTP calls the CLI, `artpay dev` and the tests make to a node's API.
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

    /// The longest `Retry-After` the client waits out; a longer one is returned as the failure.
    public static let longestRetryAfter: TimeInterval = 10

    /// Sends `json` and returns the decoded JSON object of a 2xx answer, or throws the problem.
    /// A request the node refused before doing any work for it (``RefusedBeforeWork``, with a
    /// `Retry-After` of at most ``longestRetryAfter`` seconds) is sent again after that wait, at
    /// most `retries` times: a node past its capacity sheds load instead of queueing it, and the
    /// shed load must not come straight back.
    @discardableResult
    public func call(
        _ method: String, _ path: String, json: [String: Any]? = nil, timeout: TimeInterval = 10, retries: Int = 3
    ) async throws -> [String: Any] {
        var request = URLRequest(url: URL(string: base + path)!, timeoutInterval: timeout)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
        }
        var retriesLeft = retries
        while true {
            let (data, response) = try await URLSession.shared.data(for: request)
            let http = response as? HTTPURLResponse
            let status = http?.statusCode ?? 0
            let object = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
            if (200..<300).contains(status) { return object }
            let failure = Failure(status: status, body: object)
            guard retriesLeft > 0,
                let wait = Self.retryWait(for: failure, retryAfter: http?.value(forHTTPHeaderField: "Retry-After"))
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
