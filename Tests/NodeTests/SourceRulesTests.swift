import Foundation
import Testing

/// Rules about the source text that the compiler does not enforce, where breaking one cost us.
@Suite struct SourceRulesTests {
    /// A closure stored bare as a `Mutex`'s value (`Mutex<(@Sendable (…) -> …)?>`) is wrapped in two
    /// more reabstraction thunks by every `withLock` that reads it, so each call goes through a
    /// chain one layer longer than the last: the owner's check of forwarded commands made a
    /// forwarded bid's cost grow with the number of bids before it (hot lot 576 → 159 accepted/s).
    /// Keep such closures in a struct (`ForwardedCommandCheck`) or a `let`.
    @Test func closuresAreNotStoredBareInAMutex() throws {
        let sources = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources")
        let bareClosure = try Self.bareClosure()
        var offenders: [String] = []
        var scanned = 0
        let files = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        for case let file as URL in files where file.pathExtension == "swift" {
            scanned += 1
            let lines = try String(contentsOf: file, encoding: .utf8).split(
                separator: "\n", omittingEmptySubsequences: false)
            for (number, line) in lines.enumerated() where line.contains(bareClosure) {
                offenders.append(
                    "\(file.lastPathComponent):\(number + 1): \(line.trimmingCharacters(in: .whitespaces))")
            }
        }
        #expect(scanned > 50, "the sources were found at \(sources.path)")
        #expect(offenders.isEmpty, "closures stored bare in a Mutex:\n\(offenders.joined(separator: "\n"))")
    }

    /// A `Mutex` whose value is a function type or an optional one (arrays of closures are fine: an
    /// array keeps its elements in one representation).
    private static func bareClosure() throws -> Regex<AnyRegexOutput> {
        try Regex(#"Mutex<\(*\s*(@Sendable\s*)?\([^()]*\)\s*(async\s*)?(throws(\([^)]*\))?\s*)?->"#)
    }

    /// The rule above catches what it is meant to catch.
    @Test func theRule_recognisesABareClosure() throws {
        let bareClosure = try Self.bareClosure()
        #expect("let c = Mutex<(@Sendable (Int, String) async -> Int?)?>(nil)".contains(bareClosure))
        #expect("let c = Mutex<(() -> Void)?>(nil)".contains(bareClosure))
        #expect(!"let c = Mutex<[@Sendable (UserID) -> Void]>([])".contains(bareClosure))
        #expect(!"let c = Mutex<(total: Int, byCaller: [String: Int])>((0, [:]))".contains(bareClosure))
    }
}
