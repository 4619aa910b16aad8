public import AuctionCore
import Foundation

/// The stored form of events and snapshots: a kind name plus a JSON document of the event's fields.
///
/// Why JSON: the log is the durable truth and the source of analytics queries (JSONB in
/// PostgreSQL); it must stay readable by tools and by future versions of this code. New fields
/// are added as optional, kinds are never renamed.
public enum EventCodec {
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

    public static func decode(
        kind: String, payload: String, auction: AuctionID, seq: Int64
    ) throws(StorageError) -> AuctionEvent {
        guard let kind = AuctionEvent.Kind(rawValue: kind) else {
            throw .corruptRecord(auction: auction, seq: seq, reason: "unknown event kind '\(kind)'")
        }
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
            throw .corruptRecord(auction: auction, seq: seq, reason: "undecodable \(kind.rawValue) payload: \(error)")
        }
    }

    public static func encodeSnapshot(_ auction: Auction) -> String {
        String(decoding: try! encoder.encode(auction), as: UTF8.self)
    }

    public static func decodeSnapshot(_ state: String, auction: AuctionID, seq: Int64) throws(StorageError) -> Auction {
        let snapshot: Auction
        do {
            snapshot = try JSONDecoder().decode(Auction.self, from: Data(state.utf8))
        } catch {
            throw .corruptRecord(auction: auction, seq: seq, reason: "undecodable snapshot: \(error)")
        }
        guard snapshot.id == auction, snapshot.seq == seq else {
            throw .corruptRecord(auction: auction, seq: seq, reason: "snapshot does not match its row")
        }
        return snapshot
    }
}
