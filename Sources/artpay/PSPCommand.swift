import ArgumentParser
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import PaymentSandbox
import ServiceLifecycle

/// `artpay psp`: the sandbox payment provider — a Stripe-shaped subset over HTTP with
/// idempotency keys, test cards, signed webhooks, a ledger and faults switchable at runtime
/// (`POST /v1/sandbox/faults`). `artpay dev` starts one; the tests start their own.
struct PSPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "psp", abstract: "Run the sandbox payment provider (Stripe-shaped, with faults).")

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "HTTP port.") var port = 8_200
    @Option(help: "The API secret key callers present as a bearer token (or ARTPAY_PSP_SECRET_KEY).")
    var secretKey: String?
    @Option(help: "Where to deliver webhooks; several are tried in turn until one accepts (failover).")
    var webhookURL: [String] = []
    @Option(help: "The secret webhooks are signed with (or ARTPAY_PSP_WEBHOOK_SECRET).")
    var webhookSecret: String?
    @Option(help: "Seed of the fault generator.") var seed: UInt64 = 1
    @Option(help: "Faults at start, as the JSON of POST /v1/sandbox/faults.") var faults: String?

    func run() async throws {
        var logger = Logger(label: "artpay.psp")
        logger.logLevel = .notice
        let environment = ProcessInfo.processInfo.environment
        guard let key = secretKey ?? environment["ARTPAY_PSP_SECRET_KEY"], !key.isEmpty else {
            throw ValidationError("--secret-key (or ARTPAY_PSP_SECRET_KEY) is required")
        }
        let signing = webhookSecret ?? environment["ARTPAY_PSP_WEBHOOK_SECRET"]
        if !webhookURL.isEmpty, signing == nil {
            throw ValidationError("--webhook-url needs --webhook-secret (or ARTPAY_PSP_WEBHOOK_SECRET)")
        }
        var initial = SandboxFaults()
        if let faults {
            guard let decoded = try? JSONDecoder().decode(SandboxFaults.self, from: Data(faults.utf8)) else {
                throw ValidationError("--faults is not the JSON of SandboxFaults")
            }
            initial = decoded
        }
        let sandbox = SandboxProvider(
            secretKey: key, faults: initial, seed: seed,
            webhooks: webhookURL.map { SandboxProvider.Webhook(url: $0, secret: signing ?? "") }, logger: logger)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let app = Application(
            router: sandbox.router(), configuration: .init(address: .hostname(host, port: port)), logger: logger)
        logger.notice("sandbox payment provider", metadata: ["http": "\(host):\(port)", "webhooks": "\(webhookURL)"])
        let deliverer = WebhookDeliveryService(sandbox: sandbox, http: http)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: app), .init(service: deliverer)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}

/// Delivers the sandbox's webhooks until shutdown.
struct WebhookDeliveryService: Service {
    let sandbox: SandboxProvider
    let http: HTTPClient

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await sandbox.deliverWebhooks(using: http)
        }
    }
}
