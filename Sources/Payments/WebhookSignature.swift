import Crypto
import Foundation

/// Signs and verifies provider webhooks the way Stripe does: the header
/// `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>[,v1=…]`.
///
/// Why each rule: the timestamp is inside the signed text, and a tolerance (300 s) refuses replays
/// of old deliveries; the comparison is constant-time, so a forger learns nothing from timing;
/// several `v1` entries are accepted so a secret can be rotated without losing deliveries.
public enum WebhookSignature {
    public static let header = "Stripe-Signature"
    public static let tolerance: Int64 = 300

    public enum Failure: Error, Hashable, Sendable, CustomStringConvertible {
        case missingHeader
        case malformedHeader
        case outsideTolerance(signedAt: Int64, now: Int64)
        case noMatchingSignature

        public var description: String {
            switch self {
            case .missingHeader: "no \(WebhookSignature.header) header"
            case .malformedHeader: "the signature header is not t=…,v1=…"
            case .outsideTolerance(let signedAt, let now):
                "signed at \(signedAt), \(now - signedAt) s from now: outside the \(WebhookSignature.tolerance) s tolerance"
            case .noMatchingSignature: "no v1 signature matches the payload"
            }
        }
    }

    /// The header value for `body` signed at `unixSeconds` with `secret`.
    public static func sign(_ body: [UInt8], secret: String, at unixSeconds: Int64) -> String {
        "t=\(unixSeconds),v1=\(hex(mac(body, secret: secret, at: unixSeconds)))"
    }

    /// Checks `headerValue` against `body` at `now` (unix seconds) with any of `secrets`.
    public static func verify(_ body: [UInt8], headerValue: String?, secrets: [String], now: Int64)
        throws(Failure)
    {
        guard let headerValue, !headerValue.isEmpty else { throw .missingHeader }
        var signedAt: Int64?
        var candidates: [[UInt8]] = []
        for part in headerValue.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { throw .malformedHeader }
            switch pair[0] {
            case "t":
                guard let value = Int64(pair[1]) else { throw .malformedHeader }
                signedAt = value
            case "v1":
                guard let bytes = bytes(hex: pair[1]), bytes.count == 32 else { continue }
                candidates.append(bytes)
            default:
                continue  // Other schemes (v0, test keys) are ignored, as Stripe's libraries do.
            }
        }
        guard let signedAt, !candidates.isEmpty else { throw .malformedHeader }
        guard abs(now - signedAt) <= tolerance else { throw .outsideTolerance(signedAt: signedAt, now: now) }
        for secret in secrets {
            let expected = mac(body, secret: secret, at: signedAt)
            // Every candidate is compared in full: no early exit that timing could reveal.
            var matched = false
            for candidate in candidates where constantTimeEqual(candidate, expected) { matched = true }
            if matched { return }
        }
        throw .noMatchingSignature
    }

    private static func mac(_ body: [UInt8], secret: String, at unixSeconds: Int64) -> [UInt8] {
        var signed = Array("\(unixSeconds).".utf8)
        signed += body
        let code = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Array(secret.utf8)))
        return Array(code)
    }

    static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func bytes(hex: String) -> [UInt8]? {
        let characters = Array(hex.utf8)
        guard characters.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(characters.count / 2)
        var index = 0
        while index < characters.count {
            guard let high = nibble(characters[index]), let low = nibble(characters[index + 1]) else { return nil }
            out.append(high << 4 | low)
            index += 2
        }
        return out
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
