public import AuctionCore
import AuctionRuntime
import Foundation
public import Hummingbird

/// Every error the API answers with: a status, a stable `code`, a human `detail`, and the figures
/// a client needs (`extra`), sent as `application/problem+json` (RFC 9457). Nothing else — no
/// internal error text — ever reaches a client.
public struct APIError: Error, Sendable, HTTPResponseError {
    public var status: HTTPResponse.Status
    public var code: String
    public var detail: String
    public var extra: [String: String]
    public var headers: HTTPFields

    public init(
        _ status: HTTPResponse.Status, code: String, detail: String, extra: [String: String] = [:],
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response()
    }

    /// The problem document as a response (for answers given outside the router).
    func response() -> Response {
        var headers = self.headers
        headers[.contentType] = "application/problem+json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json)))
    }

    /// The problem document, keys sorted. Written directly: most answers on a busy lot are 422s
    /// (outbid before the bid arrived), and a generic JSON serializer was the dearest step of them.
    var json: String {
        var fields: [(key: String, value: String)] = extra.map { ($0.key, JSONText.quoted($0.value)) }
        fields.append(("type", JSONText.quoted("https://artpay.dev/problems/\(code)")))
        fields.append(("title", JSONText.quoted(status.reasonPhrase)))
        fields.append(("code", JSONText.quoted(code)))
        fields.append(("detail", JSONText.quoted(detail)))
        fields.append(("status", "\(status.code)"))
        fields.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        var text = "{"
        for (index, field) in fields.enumerated() {
            if index > 0 { text += "," }
            text += JSONText.quoted(field.key)
            text += ":"
            text += field.value
        }
        return text + "}"
    }

    // MARK: Common errors

    static func malformed(_ detail: String) -> APIError {
        APIError(.badRequest, code: "malformed_request", detail: detail)
    }
    static let unauthenticated = APIError(
        .unauthorized, code: "unauthenticated", detail: "A bearer token is required.",
        headers: [.wwwAuthenticate: "Bearer"])
    static func invalidToken(_ detail: String) -> APIError {
        APIError(
            .unauthorized, code: "invalid_token", detail: detail,
            headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
    }
    static let tokenRevoked = APIError(
        .unauthorized, code: "token_revoked",
        detail: "This token was revoked (roles changed, logged out everywhere, or the user is gone); log in again.",
        headers: [.wwwAuthenticate: "Bearer error=\"invalid_token\""])
    static let storeUnavailable = APIError(
        .serviceUnavailable, code: "store_unavailable", detail: "The store is busy; try again shortly.",
        headers: [.retryAfter: "1"])
    static let biddingBlocked = APIError(
        .forbidden, code: "bidding_blocked",
        detail: "You did not pay for a lot you won by its deadline, so you may not bid until an admin lifts the block.")

    static func forbidden(_ role: Role) -> APIError {
        APIError(
            .forbidden, code: "forbidden", detail: "This needs the \(role.rawValue) role.",
            extra: ["requiredRole": role.rawValue])
    }

    /// The answer for an engine error: rule rejections are 422 (or 404/409 where they say so),
    /// ownership and store trouble 503 with `Retry-After`.
    static func engine(_ error: EngineError) -> APIError {
        switch error {
        case .rejected(let rejection):
            return rejected(rejection)
        case .refusedByOwner(let code, let detail):
            if code == tokenRevoked.code { return tokenRevoked }
            return APIError(.forbidden, code: code, detail: detail)
        case .notOwner, .ownerUnavailable, .storeUnavailable, .stopped:
            return APIError(
                .serviceUnavailable, code: error.code,
                detail: "The auction is moving between nodes or the store is busy; retry with the same bid id.",
                headers: [.retryAfter: "1"])
        }
    }

    /// The answer for a rule rejection (public: the benchmark's baseline servers answer alike).
    public static func rejected(_ rejection: AuctionRejection) -> APIError {
        var extra: [String: String] = [:]
        switch rejection {
        case .belowMinimum(let minimum):
            extra = ["minimum": "\(minimum.minorUnits)", "currency": minimum.currency.code]
        case .maximumNotAboveCurrent(let current):
            extra = ["currentMaximum": "\(current.minorUnits)", "currency": current.currency.code]
        case .buyNowPriceMismatch(let price):
            extra = ["buyNowPrice": "\(price.minorUnits)", "currency": price.currency.code]
        case .currencyMismatch(let expected): extra = ["currency": expected.code]
        case .amountTooLarge(let limit): extra = ["limit": "\(limit)"]
        case .notOpenYet(let at): extra = ["opensAt": Timestamps.format(at)]
        case .notYetEnded(let at): extra = ["endsAt": Timestamps.format(at)]
        default: break
        }
        let status: HTTPResponse.Status
        switch rejection {
        case .auctionNotFound, .settlement(.notOpen): status = .notFound
        case .auctionAlreadyExists, .bidIdConflict: status = .conflict
        case .settlement(.paymentInFlight), .settlement(.wrongPhase): status = .conflict
        case .settlement(.notTheBuyer), .settlement(.notTheOfferedBidder): status = .forbidden
        default: status = .unprocessableContent
        }
        return APIError(status, code: rejection.code, detail: rejection.message, extra: extra)
    }
}

/// RFC 3339 timestamps in the API, milliseconds in the engine.
enum Timestamps {
    static func format(_ timestamp: Timestamp) -> String { timestamp.rfc3339 }

    static func parse(_ text: String) -> Timestamp? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) ?? ISO8601DateFormatter().date(from: text) {
            return Timestamp(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1_000).rounded()))
        }
        return nil
    }
}

/// JSON text for the few documents written by hand.
enum JSONText {
    /// `string` as a JSON string literal (RFC 8259: quote, backslash and control characters escaped).
    static func quoted(_ string: String) -> String {
        var result = "\""
        result.reserveCapacity(string.utf8.count + 2)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
