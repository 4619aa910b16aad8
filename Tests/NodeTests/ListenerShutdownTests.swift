import AuctionCore
import ClusterCore
import Foundation
import Node
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Stopping a node's cluster listener while peers are connecting must end it cleanly. Cancelling
/// the loop over a listening NIOAsyncChannel dropped connections it had accepted but not yet handed
/// out, and NIO trapped on them ("Deinited NIOAsyncWriter without calling finish()"), ending the
/// whole process — this test then crashes instead of failing. Connections accepted but not yet
/// handed out must be closed with the listener, not left open and unread.
@Suite struct ListenerShutdownTests {
    @Test func stoppingTheListener_whileConnectionsArrive_endsIt() async throws {
        let id = NodeID(rawValue: "listener")!
        for round in 0..<5 {
            let transport = try ClusterTransport(
                node: id, secret: ClusterSecret("listener shutdown test secret")!, tls: TestCertificates.tls(for: id),
                logger: .init(label: "listener"))
            let port = Mutex<Int?>(nil)
            let ended = Mutex(false)
            let serving = Task {
                try? await transport.serve(host: "127.0.0.1", port: 0) { bound in port.withLock { $0 = bound } }
                ended.withLock { $0 = true }
            }
            try await eventually("round \(round): the listener is bound") {
                port.withLock { $0 } != nil
            }
            // Connections the kernel completes at once, and the listener's loop takes in over time.
            let sockets = (0..<64).map { _ in Self.connect(to: port.withLock { $0 }!) }
            serving.cancel()
            try await eventually("round \(round): the listener ends") { ended.withLock { $0 } }
            #expect(sockets.filter { $0 >= 0 }.count == 64, "every connection was made")
            // Also those accepted but never handed out: none stays open, unread, after the listener.
            try await eventually("round \(round): the node closed every connection") {
                sockets.allSatisfy { $0 < 0 || Self.closedByPeer($0) }
            }
            for socket in sockets where socket >= 0 { close(socket) }
            transport.shutdown()
        }
    }

    /// Whether the other end closed `socket` (end of stream or reset), reading without waiting.
    private static func closedByPeer(_ socket: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(socket, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count > 0 { continue }
            return count == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
        }
    }

    /// A blocking TCP connect to 127.0.0.1:`port`; the socket, or -1.
    private static func connect(to port: Int) -> Int32 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return -1 }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(socket)
            return -1
        }
        return socket
    }
}
