/// A point in time, in whole milliseconds since the Unix epoch (UTC).
///
/// Why not `Date` or a clock instant: the core never reads a clock. Every decision takes `now` as an
/// input value, so tests and simulations drive time by hand and replays are exact. Milliseconds are
/// the resolution auction rules and the stored log need.
public struct Timestamp: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public var millisecondsSinceEpoch: Int64

    public init(millisecondsSinceEpoch: Int64) {
        self.millisecondsSinceEpoch = millisecondsSinceEpoch
    }

    public init(from decoder: any Decoder) throws {
        millisecondsSinceEpoch = try decoder.singleValueContainer().decode(Int64.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(millisecondsSinceEpoch)
    }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool {
        lhs.millisecondsSinceEpoch < rhs.millisecondsSinceEpoch
    }

    /// This instant moved by `duration`, truncated to whole milliseconds.
    public func advanced(by duration: Duration) -> Timestamp {
        Timestamp(millisecondsSinceEpoch: millisecondsSinceEpoch + duration.wholeMilliseconds)
    }

    /// The time from `self` to `other` (negative when `other` is earlier).
    public func duration(to other: Timestamp) -> Duration {
        .milliseconds(other.millisecondsSinceEpoch - millisecondsSinceEpoch)
    }

    public var description: String { "\(millisecondsSinceEpoch)ms" }
}

extension Duration {
    /// The duration in whole milliseconds, truncated toward zero, saturating at the bounds of
    /// `Int64` (a duration from untrusted input must not trap when it is encoded or compared).
    public var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (milliseconds, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (total, overflowAgain) = milliseconds.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
        if overflowAgain { return milliseconds < 0 ? .min : .max }
        return total
    }
}

extension Timestamp {
    /// `2026-11-26T19:47:19.123Z`: UTC with milliseconds, computed directly (every auction view
    /// carries two; a date formatter per call was a visible share of a bid's cost).
    public var rfc3339: String {
        let milliseconds = millisecondsSinceEpoch
        let (days, dayMilliseconds) = milliseconds.quotientAndRemainder(dividingBy: 86_400_000)
        let (day, inDay) = dayMilliseconds < 0 ? (days - 1, dayMilliseconds + 86_400_000) : (days, dayMilliseconds)
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
        let z = day + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let dayOfMonth = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func digits(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        return digits(year, 4) + "-" + digits(month, 2) + "-" + digits(dayOfMonth, 2) + "T"
            + digits(inDay / 3_600_000, 2) + ":" + digits(inDay / 60_000 % 60, 2) + ":"
            + digits(inDay / 1_000 % 60, 2) + "." + digits(inDay % 1_000, 3) + "Z"
    }
}
