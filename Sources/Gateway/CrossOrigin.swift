import HTTPTypes
public import Hummingbird

/// Which browser origins may call the API from their pages (`http.cors.allowedOrigins`).
///
/// Why a list and no `*`: the API takes bearer tokens, and a page that may call it can act with
/// whatever token it holds; nodes serve their own pages (same origin, no CORS needed), so the
/// default is no other origin at all. A listed origin gets `Access-Control-Allow-Origin` naming it
/// (never `*`, no credentials: tokens travel in `Authorization`, not cookies); every other origin
/// gets no CORS header, so browsers keep its pages from reading answers, and its preflights are
/// refused with 403.
public struct CrossOriginPolicy: Sendable, Hashable {
    public var allowedOrigins: Set<String>

    public init(allowedOrigins: Set<String> = []) {
        self.allowedOrigins = allowedOrigins
    }

    static let allowedMethods = "GET, POST, PUT, DELETE"
    static let allowedHeaders = "authorization, content-type, last-event-id"
    /// What a page may read besides the simple headers: limits and retry hints.
    static let exposedHeaders = "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, location, x-request-id"

    /// The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`), or nil for any
    /// other request.
    func preflight(_ request: Request, members: @Sendable () -> Set<String>) -> Response? {
        guard request.method == .options, let origin = request.headers[.origin],
            request.headers[.accessControlRequestMethod] != nil
        else { return nil }
        guard allowedOrigins.contains(origin) || members().contains(origin) else {
            return APIError(
                .forbidden, code: "origin_not_allowed",
                detail: "Pages of \(origin) may not call this API (http.cors.allowedOrigins)."
            ).response()
        }
        return Response(
            status: .noContent,
            headers: [
                .accessControlAllowOrigin: origin, .accessControlAllowMethods: Self.allowedMethods,
                .accessControlAllowHeaders: Self.allowedHeaders, .accessControlMaxAge: "600", .vary: "Origin",
            ])
    }

    /// `response` with the CORS headers `request`'s origin is entitled to.
    func decorate(_ response: Response, for request: Request, members: @Sendable () -> Set<String>) -> Response {
        guard let origin = request.headers[.origin], allowedOrigins.contains(origin) || members().contains(origin)
        else { return response }
        var response = response
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        response.headers[values: .vary].append("Origin")
        return response
    }
}

/// Applies a ``CrossOriginPolicy`` around every route, unmatched paths included (a preflight is
/// answered before routing).
public struct CrossOrigin<Builder: HTTPResponderBuilder>: HTTPResponderBuilder {
    let builder: Builder
    let policy: CrossOriginPolicy

    let memberOrigins: @Sendable () -> Set<String>

    /// `memberOrigins`: the origins of the cluster's own nodes, whose pages may always call this
    /// one (a page goes on through another node when its own dies).
    public init(
        _ builder: Builder, policy: CrossOriginPolicy, memberOrigins: @escaping @Sendable () -> Set<String> = { [] }
    ) {
        self.builder = builder
        self.policy = policy
        self.memberOrigins = memberOrigins
    }

    public func buildResponder() -> CrossOriginResponder<Builder.Responder> {
        CrossOriginResponder(inner: builder.buildResponder(), policy: policy, memberOrigins: memberOrigins)
    }
}

public struct CrossOriginResponder<Inner: HTTPResponder>: HTTPResponder {
    public typealias Context = Inner.Context
    let inner: Inner
    let policy: CrossOriginPolicy
    let memberOrigins: @Sendable () -> Set<String>

    public func respond(to request: Request, context: Context) async throws -> Response {
        if let preflight = policy.preflight(request, members: memberOrigins) { return preflight }
        return policy.decorate(
            try await inner.respond(to: request, context: context), for: request, members: memberOrigins)
    }
}
