import Foundation
import Gateway
import Hummingbird
import HummingbirdTesting
import HummingbirdWSTesting
import Synchronization
import TestSupport
import Testing

/// `GET /v1/auctions/{id}/ws?since=` over a real socket: the events after `since`, in order, then
/// live ones; a reconnect with the last seq seen continues without gap or repeat.
@Suite struct WebSocketTests {
    @Test func events_afterSince_thenLive_andAReconnectContinues() async throws {
        try await GatewayHarness.run(live: true) { client, _ in
            let seller = try await client.signUp("wanda", roles: ["seller"])
            let bidder = try await client.signUp("walt")
            #expect(
                try await client.send(.post, "/v1/auctions", json: auctionJSON(id: "lot-ws"), token: seller).status
                    == .created)
            for n in 1...3 {
                let bid = #"{"bidId":"w\#(n)","maximum":\#(2_000 + n * 1_000),"currency":"EUR"}"#
                #expect(
                    try await client.send(.post, "/v1/auctions/lot-ws/bids", json: bid, token: bidder).status
                        == .created)
            }
            let received = Received()
            // First connection: everything after the creation (seq 1), then close.
            try await client.ws("/v1/auctions/lot-ws/ws?since=1") { inbound, _, _ in
                var messages = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
                while let message = try await messages.next() {
                    guard case .text(let text) = message else { continue }
                    if received.append(text) == 3 { return }
                }
            }
            #expect(received.seqs == [2, 3, 4])
            #expect(received.types == ["bid", "bid", "bid"])
            // Second connection from seq 4: a bid placed while it is open arrives live, once.
            try await client.ws("/v1/auctions/lot-ws/ws?since=4") { inbound, _, _ in
                try await eventually("an open WebSocket is counted as one") {
                    let metrics = String(buffer: try await client.send(.get, "/metrics").body)
                    return metrics.contains(#"artpay_event_streams_open{transport="websocket"} 1.0"# + "\n")
                }
                let bid = #"{"bidId":"w4","maximum":9000,"currency":"EUR"}"#
                _ = try await client.send(.post, "/v1/auctions/lot-ws/bids", json: bid, token: bidder)
                var messages = inbound.messages(maxSize: 1 << 16).makeAsyncIterator()
                while let message = try await messages.next() {
                    guard case .text(let text) = message else { continue }
                    if received.append(text) == 4 { return }
                }
            }
            #expect(received.seqs == [2, 3, 4, 5])
            // A malformed `since` is refused before the upgrade.
            await #expect(throws: (any Error).self) {
                try await client.ws("/v1/auctions/lot-ws/ws?since=-3") { _, _, _ in }
            }
        }
    }
}

private final class Received: Sendable {
    private let messages = Mutex<[(seq: Int, type: String)]>([])

    /// Adds a message; returns how many there are.
    func append(_ text: String) -> Int {
        let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
        let entry = (seq: object["seq"] as? Int ?? -1, type: object["type"] as? String ?? "?")
        return messages.withLock {
            $0.append(entry)
            return $0.count
        }
    }

    var seqs: [Int] { messages.withLock { $0.map(\.seq) } }
    var types: [String] { messages.withLock { $0.map(\.type) } }
}
