import Foundation

/// The JSON form of an event's fields under its stored kind name (`AuctionEvent.Kind.rawValue`):
/// what the log stores and what a cluster frame carries for the rarer kinds.
///
/// Why JSON: the log is the durable truth and the source of analytics queries (JSONB in
/// PostgreSQL); it must stay readable by tools and by future versions of this code. New fields
/// are added as optional, kinds are never renamed.
public enum EventPayload {
    /// Why a payload is not an event.
    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        case unknownKind(String)
        case undecodable(kind: String, reason: String)

        public var description: String {
            switch self {
            case .unknownKind(let kind): "unknown event kind '\(kind)'"
            case .undecodable(let kind, let reason): "undecodable \(kind) payload: \(reason)"
            }
        }
    }

    /// Shared: never changed after this, so safe to use from any thread.
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    public static func encode(_ event: AuctionEvent) -> (kind: String, payload: String) {
        let data: Data
        // Encoding these plain value types into JSON cannot fail.
        switch event {
        case .created(let value): data = try! encoder.encode(value)
        case .bidAccepted(let value): data = try! encoder.encode(value)
        case .boughtNow(let value): data = try! encoder.encode(value)
        case .extended(let value): data = try! encoder.encode(value)
        case .closed(let value): data = try! encoder.encode(value)
        case .cancelled(let value): data = try! encoder.encode(value)
        case .settlement(let value): data = try! encoder.encode(value)
        }
        return (event.kind.rawValue, String(decoding: data, as: UTF8.self))
    }

    public static func decode(kind name: String, payload: String) throws(Failure) -> AuctionEvent {
        guard let kind = AuctionEvent.Kind(rawValue: name) else { throw .unknownKind(name) }
        let decoder = JSONDecoder()
        let data = Data(payload.utf8)
        do {
            switch kind {
            case .created: return .created(try decoder.decode(AuctionCreated.self, from: data))
            case .bidAccepted: return .bidAccepted(try decoder.decode(BidAccepted.self, from: data))
            case .boughtNow: return .boughtNow(try decoder.decode(BoughtNow.self, from: data))
            case .extended: return .extended(try decoder.decode(ClosingExtended.self, from: data))
            case .closed: return .closed(try decoder.decode(AuctionClosed.self, from: data))
            case .cancelled: return .cancelled(try decoder.decode(AuctionCancelled.self, from: data))
            case .settlement: return .settlement(try decoder.decode(SettlementEvent.self, from: data))
            }
        } catch {
            throw .undecodable(kind: name, reason: "\(error)")
        }
    }
}
