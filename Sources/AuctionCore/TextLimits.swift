/// Limits on free text, in UTF-8 bytes: the one unit every layer shares — the API, the stored
/// JSON and the cluster wire — so a text one layer accepts is never cut, emptied or refused by
/// another, and an answer is the same whether the request was forwarded or not.
public enum TextLimits {
    /// A lot's title.
    public static let titleBytes = 512
    /// An admin's reason for cancelling an auction.
    public static let cancelReasonBytes = 1_000
    /// The most any text takes on the cluster wire; at least every limit above.
    public static let wireTextBytes = 1_024

    /// Whether `text` is 1 to `maximumBytes` bytes of UTF-8, not only white space, and free of
    /// control characters (which no title or reason needs and which break logs and displays).
    public static func isAcceptable(_ text: String, maximumBytes: Int) -> Bool {
        text.utf8.count <= maximumBytes && !text.allSatisfy(\.isWhitespace)
            && !text.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// `text` cut to at most `maximumBytes` bytes at a character boundary (never inside one): for
    /// texts no rule bounds, such as a store's error detail.
    public static func truncated(_ text: String, maximumBytes: Int) -> String {
        guard text.utf8.count > maximumBytes else { return text }
        var result = ""
        var bytes = 0
        for character in text {
            let size = character.utf8.count
            guard bytes + size <= maximumBytes else { break }
            result.append(character)
            bytes += size
        }
        return result
    }
}
