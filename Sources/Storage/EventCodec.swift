public import AuctionCore
import Foundation

/// The stored form of events (`EventPayload`, in AuctionCore) and snapshots, with the store's errors.
public enum EventCodec {
    /// Shared: never changed after this, so safe to use from any thread.
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    public static func encode(_ event: AuctionEvent) -> (kind: String, payload: String) {
        EventPayload.encode(event)
    }

    public static func decode(
        kind: String, payload: String, auction: AuctionID, seq: Int64
    ) throws(StorageError) -> AuctionEvent {
        do {
            return try EventPayload.decode(kind: kind, payload: payload)
        } catch {
            throw .corruptRecord(auction: auction, seq: seq, reason: error.description)
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
