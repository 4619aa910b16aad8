public import AuctionCore
import Storage
import Synchronization

/// The owner's side of event fan-out: who wants the events of every auction this node writes
/// (each other live member, for its read model and its live feeds, and this node itself), and
/// handing each durable batch to them. Subscriptions expire unless renewed, so a subscriber that
/// went away costs nothing for long; a subscriber renews every few seconds and after every view
/// change.
///
/// Delivery is best effort and in order per subscriber; subscribers close gaps from the store, so
/// a lost batch delays events but never loses them.
public final class EventFanOut: Sendable {
    public typealias Deliver = @Sendable ([StoredEvent]) -> Void

    private struct Subscription {
        var deliver: Deliver
        var expiresAt: ContinuousClock.Instant
    }

    private let subscribers = Mutex<[String: Subscription]>([:])
    public static let lease: Duration = .seconds(6)

    public init() {}

    /// Registers (or renews) `subscriber`'s interest in every auction written here.
    public func subscribeToEverything(subscriber: String, deliver: @escaping Deliver) {
        subscribers.withLock {
            $0[subscriber] = Subscription(deliver: deliver, expiresAt: .now.advanced(by: Self.lease))
        }
    }

    /// Hands durable events (one auction's, in seq order) to every live subscriber. Called by the
    /// registry, in the order each auction's batches became durable.
    public func publish(_ events: [StoredEvent]) {
        guard !events.isEmpty else { return }
        let now = ContinuousClock.now
        let targets = subscribers.withLock { all -> [Deliver] in
            all = all.filter { $0.value.expiresAt > now }
            return all.values.map(\.deliver)
        }
        for deliver in targets { deliver(events) }
    }
}

/// One local consumer of an auction's events: yields every event after its start, in seq order,
/// exactly once, whatever arrives pushed, late, twice or not at all — gaps are read from the store.
final class EventFeed: Sendable {
    let auction: AuctionID
    private let inbox: AsyncStream<[StoredEvent]>.Continuation
    private let task: Task<Void, Never>

    init(auction: AuctionID, after seq: Int64, store: any EventStore, output: AsyncStream<StoredEvent>.Continuation) {
        self.auction = auction
        let (batches, inbox) = AsyncStream.makeStream(of: [StoredEvent].self, bufferingPolicy: .bufferingNewest(1_024))
        self.inbox = inbox
        task = Task {
            var last = seq
            func emit(_ event: StoredEvent) {
                output.yield(event)
                last = event.seq
            }
            func catchUp(before limit: Int64?) async {
                while limit.map({ last + 1 < $0 }) ?? true {
                    let page: [StoredEvent]
                    do {
                        page = try await store.events(of: auction, after: last, limit: 500)
                    } catch .compacted(_, let keptFrom) {
                        // An archived lot's history before its snapshot is in the archive; the
                        // stream goes on with what the log keeps.
                        last = keptFrom - 1
                        continue
                    } catch {
                        return
                    }
                    guard !page.isEmpty else { return }
                    for event in page where limit.map({ event.seq < $0 }) ?? true { emit(event) }
                    if page.count < 500 { return }
                }
            }
            await catchUp(before: nil)
            for await batch in batches {
                if batch.isEmpty {
                    await catchUp(before: nil)
                    continue
                }
                for event in batch.sorted(by: { $0.seq < $1.seq }) where event.seq > last {
                    if event.seq > last + 1 { await catchUp(before: event.seq) }
                    if event.seq == last + 1 { emit(event) }
                }
            }
            output.finish()
        }
        output.onTermination = { [inbox] _ in inbox.finish() }
    }

    /// Events pushed by the owner.
    func offer(_ events: [StoredEvent]) { inbox.yield(events) }

    /// Look in the store for anything missed (after a failover or a lost push).
    func poll() { inbox.yield([]) }

    func cancel() {
        inbox.finish()
        task.cancel()
    }
}
