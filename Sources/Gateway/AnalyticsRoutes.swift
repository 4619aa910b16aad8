import AuctionCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Storage

struct LotReportView: Codable, Sendable {
    struct Row: Codable, Sendable {
        var group: String?
        var currency: String
        var lots: Int
        var sold: Int
        var unsold: Int
        var cancelled: Int
        var sellThrough: Double?
        var hammerTotal: Int64
        var hammerOverStart: Double?
        var hammerOverReserve: Double?
        var bidsPerLot: Double
        var biddersPerLot: Double
        var extensionsPerLot: Double
    }

    var groupedBy: String
    var rows: [Row]
}

struct BidTimingView: Codable, Sendable {
    struct Window: Codable, Sendable {
        var fromSeconds: Int
        var toSeconds: Int?
        var bids: Int
    }

    /// Bids by how long before their lot's end they came (the sniping profile).
    var windows: [Window]
}

extension GatewayAPI {
    /// What an analytics request is about: `?from=&to=` (RFC 3339, on the lots' end), `sale=`,
    /// `seller=`, `by=none|sale|seller|month`. Admins see every lot; a seller only their own.
    private func archiveQuery(_ request: Request, context: GatewayContext) async throws(APIError) -> ArchiveQuery {
        let caller = try context.caller()
        let parameters = request.uri.queryParameters
        func time(_ name: String) throws(APIError) -> Timestamp? {
            guard let raw = parameters.get(name) else { return nil }
            guard let time = Timestamps.parse(raw) else {
                throw APIError.malformed("'\(name)' is an RFC 3339 time, such as 2026-11-01T00:00:00Z.")
            }
            return time
        }
        var query = ArchiveQuery(from: try time("from"), to: try time("to"))
        if let sale = parameters.get("sale") {
            guard let id = SaleID(rawValue: sale) else { throw APIError.malformed("'sale' is not a sale id.") }
            query.sale = id
        }
        if let seller = parameters.get("seller") {
            guard let id = UserID(rawValue: seller) else { throw APIError.malformed("'seller' is not a user id.") }
            query.seller = id
        }
        if let by = parameters.get("by") {
            guard let grouping = ArchiveQuery.Grouping(rawValue: by) else {
                throw APIError.malformed("'by' is none, sale, seller or month.")
            }
            query.grouping = grouping
        }
        let roles = try await directory.currentStanding(of: caller, fresh: true).roles
        if !roles.contains(.admin) {
            guard roles.contains(.seller) else { throw APIError.forbidden(.seller) }
            guard query.seller == nil || query.seller == caller.userId else {
                throw APIError(
                    .forbidden, code: "forbidden", detail: "A seller sees the analytics of their own lots only.")
            }
            query.seller = caller.userId
        }
        return query
    }

    private func archive<T: Sendable>(_ work: () async throws -> T) async throws(APIError) -> T {
        do {
            return try await work()
        } catch {
            throw APIError.storeUnavailable
        }
    }

    /// `GET /v1/analytics/lots`: archived lots counted by group and currency: sell-through,
    /// hammer totals, hammer against starting price and reserve, bids, bidders and extensions per lot.
    @Sendable func lotAnalytics(_ request: Request, context: GatewayContext) async throws -> Response {
        let query = try await archiveQuery(request, context: context)
        let rows = try await archive { try await self.archiveStore.lotReport(query) }
        return try Self.json(
            LotReportView(
                groupedBy: query.grouping.rawValue,
                rows: rows.map {
                    LotReportView.Row(
                        group: $0.group, currency: $0.currency, lots: $0.lots, sold: $0.sold, unsold: $0.unsold,
                        cancelled: $0.cancelled, sellThrough: $0.sellThrough, hammerTotal: $0.hammerTotal,
                        hammerOverStart: $0.hammerOverStart, hammerOverReserve: $0.hammerOverReserve,
                        bidsPerLot: $0.bidsPerLot, biddersPerLot: $0.biddersPerLot,
                        extensionsPerLot: $0.extensionsPerLot)
                }))
    }

    /// `GET /v1/analytics/bid-timing`: how many bids came in each window before their lot's end.
    @Sendable func bidTimingAnalytics(_ request: Request, context: GatewayContext) async throws -> Response {
        let query = try await archiveQuery(request, context: context)
        let rows = try await archive { try await self.archiveStore.bidTiming(query) }
        return try Self.json(
            BidTimingView(
                windows: rows.map { .init(fromSeconds: $0.fromSeconds, toSeconds: $0.toSeconds, bids: $0.bids) }))
    }

    /// `GET /v1/archive/auctions/{id}`: a finished lot's whole record (admin, or its seller).
    @Sendable func archivedAuction(_ request: Request, context: GatewayContext) async throws -> Response {
        let caller = try context.caller()
        let id = try Self.auctionId(context)
        let record = try await archive { try await self.archiveStore.archivedAuction(id) }
        let roles = try await directory.currentStanding(of: caller, fresh: true).roles
        guard let record, roles.contains(.admin) || record.sellerId == caller.userId.rawValue else {
            throw APIError(.notFound, code: "not_archived", detail: "No finished lot of yours has this id.")
        }
        return try Self.json(record)
    }

    /// `GET /v1/analytics/export?format=csv|jsonl`: every archived lot of the query's scope, one
    /// per line, by end time, read from the archive a page at a time as the client takes them.
    @Sendable func exportArchive(_ request: Request, context: GatewayContext) async throws -> Response {
        let query = try await archiveQuery(request, context: context)
        let format = request.uri.queryParameters.get("format") ?? "jsonl"
        guard ["csv", "jsonl"].contains(format) else { throw APIError.malformed("'format' is csv or jsonl.") }
        // A store that does not answer is a status, not a truncated file.
        _ = try await archive { try await self.archiveStore.archivedRecords(query, after: nil, limit: 1) }
        let store = archiveStore
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let lines = AsyncThrowingStream<ByteBuffer, any Error> { continuation in
            let task = Task {
                if format == "csv" { continuation.yield(ByteBuffer(string: ArchiveCSV.header)) }
                var after: (Timestamp, AuctionID)?
                do {
                    while !Task.isCancelled {
                        let page = try await store.archivedRecords(query, after: after, limit: 500)
                        var text = ""
                        for record in page {
                            if format == "csv" {
                                text += ArchiveCSV.line(record)
                            } else {
                                text += String(decoding: try encoder.encode(record), as: UTF8.self) + "\n"
                            }
                        }
                        if !text.isEmpty { continuation.yield(ByteBuffer(string: text)) }
                        guard page.count == 500, let last = page.last, let id = AuctionID(rawValue: last.auctionId)
                        else { break }
                        after = (last.endedAt, id)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
        let type = format == "csv" ? "text/csv; charset=utf-8" : "application/jsonl"
        return Response(
            status: .ok, headers: [.contentType: type, .contentDisposition: "attachment; filename=\"lots.\(format)\""],
            body: ResponseBody(asyncSequence: lines))
    }
}

/// The CSV form of archived lots: one line each, RFC 4180 quoting.
enum ArchiveCSV {
    static let header =
        "auctionId,saleId,sellerId,title,currency,startingPrice,reservePrice,hammer,result,reason,bids,bidders,"
        + "extensions,opensAt,closesAt,endedAt,winnerId,settlement\r\n"

    static func line(_ record: AuctionRecord) -> String {
        let fields: [String?] = [
            record.auctionId, record.saleId, record.sellerId, record.title, record.currency,
            String(record.startingPrice), record.reservePrice.map(String.init), record.hammer.map(String.init),
            record.result.rawValue, record.reason, String(record.bids.count), String(record.bidderCount),
            String(record.extensions.count), record.opensAt.rfc3339, record.closesAt.rfc3339, record.endedAt.rfc3339,
            record.winnerId, record.settlement,
        ]
        return fields.map { quoted($0 ?? "") }.joined(separator: ",") + "\r\n"
    }

    /// A field in quotes when it holds a comma, a quote, a line break, or starts with a character
    /// a spreadsheet would run as a formula (`=`, `+`, `-`, `@`; then prefixed with `'`).
    static func quoted(_ field: String) -> String {
        var text = field
        if let first = text.first, "=+-@".contains(first), Int64(text) == nil { text = "'" + text }
        guard text.contains(where: { ",\"\r\n".contains($0) }) || text != field else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

extension GatewayAPI {
    /// The archive: analytics reports, the export and one archived lot.
    func addAnalyticsRoutes(to api: RouterGroup<GatewayContext>) {
        api.get("/analytics/lots", use: lotAnalytics)
        api.get("/analytics/bid-timing", use: bidTimingAnalytics)
        api.get("/analytics/export", use: exportArchive)
        api.get("/archive/auctions/:id", use: archivedAuction)
    }
}
