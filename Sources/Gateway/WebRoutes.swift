import HTTPTypes
import Hummingbird
import NIOCore

/// The web room every node serves: `index.html` at `/`, the other files at `/assets/<name>`. The
/// files are compiled into the binary (`WebAssets.generated.swift`, written by `scripts/embed-web`
/// from `Sources/Gateway/Web/`), so there is nothing to ship or find at run time.
enum WebAssets {
    static func route(_ router: Router<GatewayContext>) {
        router.get("/") { _, _ -> Response in try response(for: "index.html") }
        router.get("/assets/:name") { _, context -> Response in
            try response(for: context.parameters.get("name") ?? "")
        }
    }

    static func response(for name: String) throws(APIError) -> Response {
        guard let text = files[name], let type = contentType(of: name) else {
            throw APIError(.notFound, code: "not_found", detail: "There is no such file.")
        }
        return Response(
            status: .ok,
            headers: [
                .contentType: type, .cacheControl: "no-cache", .xContentTypeOptions: "nosniff",
                .contentSecurityPolicy: contentSecurityPolicy,
            ],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Pages run only their own scripts and styles; they may call any node of the cluster (a page
    /// goes on through another node when its own dies), never frame or be framed.
    static let contentSecurityPolicy =
        "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

    static func contentType(of name: String) -> String? {
        switch name.split(separator: ".").last {
        case "html": "text/html; charset=utf-8"
        case "js": "text/javascript; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        case "svg": "image/svg+xml"
        default: nil
        }
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let contentSecurityPolicy = Self("Content-Security-Policy")!
}
