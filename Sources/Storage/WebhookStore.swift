public import AuctionCore

/// Webhook endpoints and their deliveries, in the same store as the auctions.
///
/// An endpoint follows the commit-ordered feed from its own cursor. The node that owns the
/// endpoint's shard delivers, and moves the cursor only under that shard's current lease epoch and
/// the endpoint's current generation: a node that lost the shard cannot move it (so deliveries
/// are never lost, and repeated only around a failover — at least once), and a replay, which
/// moves the cursor back and bumps the generation, is seen by the deliverer at its next step.
public protocol WebhookStore: Sendable {
    /// Registers `endpoint`; false when its id exists.
    func createWebhookEndpoint(_ endpoint: WebhookEndpoint) async throws(StorageError) -> Bool
    /// Every endpoint, oldest first.
    func webhookEndpoints() async throws(StorageError) -> [WebhookEndpoint]
    func webhookEndpoint(_ id: String) async throws(StorageError) -> WebhookEndpoint?
    /// Removes the endpoint and its delivery log; whether there was one.
    func deleteWebhookEndpoint(_ id: String) async throws(StorageError) -> Bool
    /// Moves the endpoint's cursor to `cursor` if its generation is still `generation` and `epoch`
    /// is still the lease of `shard`; whether it moved.
    func advanceWebhookCursor(
        of id: String, to cursor: FeedCursor, generation: Int64, shard: ShardID, epoch: Epoch
    ) async throws(StorageError) -> Bool
    /// Sets the endpoint's cursor to `cursor` (a replay from there) and bumps its generation;
    /// the endpoint as it is now, nil when there is none.
    func rewindWebhookCursor(of id: String, to cursor: FeedCursor) async throws(StorageError) -> WebhookEndpoint?
    /// Logs one delivery attempt.
    func recordWebhookDelivery(_ delivery: WebhookDelivery) async throws(StorageError)
    /// The endpoint's latest attempts, newest first.
    func webhookDeliveries(of id: String, limit: Int) async throws(StorageError) -> [WebhookDelivery]
    /// Forgets attempts older than `time` (the log is for looking back days, not for ever).
    func pruneWebhookDeliveries(before time: Timestamp) async throws(StorageError)
    /// The cursor after the newest event a feed reader can see now: where an endpoint that wants
    /// only what happens from now on starts.
    func feedHead() async throws(StorageError) -> FeedCursor
}

/// Where an admin asked events to be sent, and how far they have been.
public struct WebhookEndpoint: Hashable, Sendable {
    public var id: String
    public var url: String
    /// Public event names (`AuctionEvent.Kind.publicName`) it wants; empty: every kind.
    public var types: [String]
    /// The HMAC key deliveries are signed with; never shown after creation.
    public var secret: String
    public var createdAt: Timestamp
    /// After which event of the feed the next delivery starts.
    public var cursor: FeedCursor
    /// Bumped by each replay: a deliverer holding an older one reloads before moving on.
    public var generation: Int64

    public init(
        id: String, url: String, types: [String], secret: String, createdAt: Timestamp, cursor: FeedCursor,
        generation: Int64 = 0
    ) {
        self.id = id
        self.url = url
        self.types = types
        self.secret = secret
        self.createdAt = createdAt
        self.cursor = cursor
        self.generation = generation
    }
}

/// One attempt to deliver one event to one endpoint.
public struct WebhookDelivery: Hashable, Sendable {
    public enum Outcome: String, Sendable, Hashable, CaseIterable {
        /// The endpoint answered 2xx.
        case delivered
        /// It answered otherwise or not at all; the event is sent again after a pause.
        case failed
        /// It kept failing for the whole retry period: the event is passed over.
        case abandoned
    }

    public var endpoint: String
    public var cursor: FeedCursor
    public var auction: AuctionID
    public var seq: Int64
    public var type: String
    /// 1 for the first attempt at this event.
    public var attempt: Int
    public var outcome: Outcome
    /// The HTTP status, when there was an answer.
    public var status: Int?
    /// Why it failed, in a line.
    public var error: String?
    public var at: Timestamp
    /// The node that made the attempt.
    public var node: String

    public init(
        endpoint: String, cursor: FeedCursor, auction: AuctionID, seq: Int64, type: String, attempt: Int,
        outcome: Outcome, status: Int?, error: String?, at: Timestamp, node: String
    ) {
        self.endpoint = endpoint
        self.cursor = cursor
        self.auction = auction
        self.seq = seq
        self.type = type
        self.attempt = attempt
        self.outcome = outcome
        self.status = status
        self.error = error
        self.at = at
        self.node = node
    }
}
