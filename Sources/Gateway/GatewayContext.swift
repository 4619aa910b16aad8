public import Hummingbird
import NIOCore

/// The per-request context of the API: who is calling (once authenticated) and from where.
public struct GatewayContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by `AuthenticationMiddleware` from a valid bearer token.
    public var identity: Identity?
    /// The client's IP address, the rate-limit key of anonymous requests.
    public let clientAddress: String
    /// Completes when the client's connection closes: a live stream ends then, not at its next
    /// write.
    let connectionClosed: EventLoopFuture<Void>

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        identity = nil
        clientAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
        connectionClosed = source.channel.closeFuture
    }

    /// Request bodies are small JSON documents.
    public var maxUploadSize: Int { 64 * 1_024 }

    /// The authenticated caller, or 401.
    func caller() throws(APIError) -> Identity {
        guard let identity else { throw APIError.unauthenticated }
        return identity
    }
}
