/// The API's problem codes for requests a node refuses before doing any work for them — admission
/// control, rate limits, the connection cap. Such a request may simply be sent again once the
/// `Retry-After` the node named has passed. Defined once, here, for the nodes that answer with
/// these codes and the clients that retry on them.
public enum RefusedBeforeWork: String, CaseIterable, Sendable {
    /// 503: the node is at its in-flight limit.
    case overloaded
    /// 429: the caller (or address) spent its request budget.
    case rateLimited = "rate_limited"
    /// 503: the node, or the caller's address, holds as many connections as it keeps.
    case tooManyConnections = "too_many_connections"
}
