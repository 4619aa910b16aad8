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

    /// Sends `json` and returns the decoded JSON object of a 2xx answer, or throws the problem.
    @discardableResult
    public func call(_ method: String, _ path: String, json: [String: Any]? = nil, timeout: TimeInterval = 10)
        async throws
        -> [String: Any]
    {
        var request = URLRequest(url: URL(string: base + path)!, timeoutInterval: timeout)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let object = (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
        guard (200..<300).contains(status) else { throw Failure(status: status, body: object) }
        return object
    }

    /// Logs in and returns a client that carries the token.
    public func loggedIn(_ username: String, _ password: String) async throws -> APIClient {
        let session = try await call("POST", "/v1/sessions", json: ["username": username, "password": password])
        guard let token = session["token"] as? String else { throw Failure(status: 0, body: ["detail": "no token"]) }
        return APIClient(base: base, token: token)
    }
}
