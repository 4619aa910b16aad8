/// The id of the client request a piece of work is done for, carried in a task-local value from the
/// HTTP request through `ClusterNode.submit` and — in the forwarded command's frame — to the owner
/// that runs it, so that one bid can be followed in the logs of every node it crosses (`request`
/// in their metadata).
public enum RequestTrace {
    @TaskLocal public static var id: String?

    /// Ids are what a client may send in `X-Request-ID`: 1–64 of A–Z a–z 0–9 `-` `_` `.` `:`.
    public static let maximumLength = 64

    public static func isValid(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= maximumLength
            && id.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                    || byte == 0x2D || byte == 0x5F || byte == 0x2E || byte == 0x3A
            }
    }
}
