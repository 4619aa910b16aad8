import ArgumentParser
import AsyncHTTPClient
import AuctionRuntime
import Foundation
import Gateway
import Hummingbird
import HummingbirdWebSocket
import Logging
import Node
import Payments
import PostgresNIO
import ServiceLifecycle
import Storage

/// `artpay node --config cluster-config/<file>.json`: one cluster node. Stops gracefully on
/// SIGTERM/SIGINT: leaves the cluster (so peers move its shards at once) and stops its auctions.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Run one ArtPay cluster node from a configuration file.")

    @Option(help: "The node's configuration file (JSON; see cluster-config/). ARTPAY_* variables override it.")
    var config: String

    @Option(help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Option(help: "Log format: text (for people), or json (one object per line, for log collectors).")
    var logFormat: String = "text"

    func validate() throws {
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("--log-format is text or json") }
    }

    func run() async throws {
        if logFormat == "json" {
            LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        }
        var settings: NodeSettings
        do {
            settings = try await NodeSettings.load(file: config)
        } catch let invalid as NodeSettings.Invalid {
            throw ValidationError(invalid.description)
        }
        var logger = Logger(label: "artpay.node")
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        logger[metadataKey: "node"] = "\(settings.cluster.id)"
        let descriptors = DescriptorLimit.raiseToHardLimit()
        let wantedConnections = settings.api.connections.maximumConnections
        settings.api.connections.maximumConnections = ConnectionLimits.maximumConnections(
            wanted: wantedConnections, descriptorLimit: descriptors)
        logger.notice(
            "file descriptors",
            metadata: [
                "limit": "\(descriptors)", "httpConnectionCap": "\(settings.api.connections.maximumConnections)",
                "perAddressCap": "\(settings.api.connections.maximumConnectionsPerAddress)",
            ])

        // Outbound cluster connections leave from the cluster host when it is one IP address.
        let transport = try ClusterTransport(
            node: settings.cluster.id, secret: settings.secret, tls: settings.tls,
            outboundSource: settings.clusterBind.host, logger: logger)
        let tokens = try await TokenAuthority.make(
            signing: settings.signingKey, verification: settings.verificationKeys, lifetime: settings.tokenLifetime)
        // Nothing below may fail before the group runs: an opened SQLite store must be closed.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let store: any EventStore & UserStore & WebhookStore & ArchiveStore
        var sqlite: SQLiteEventStore?
        switch settings.store {
        case .postgres(let host, let port, let user, let password, let database):
            var configuration = PostgresClient.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: .disable)
            configuration.options.maximumConnections = 16
            let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
            services.append(.init(service: client))
            store = PostgresEventStore(
                client: client, fencing: settings.fencing, timeout: settings.storeCallTimeout, logger: logger)
        case .sqlite(let path):
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            }
            let opened = try await SQLiteEventStore.open(path: path, fencing: settings.fencing, logger: logger)
            sqlite = opened
            store = opened
        }

        if settings.fencing == .unsafelyDisabled {
            logger.critical(
                "FENCING IS DISABLED (debug.unsafeDisableFencing): stale owners can write; never run this in service")
        }
        let clock = SystemClock()
        let node = ClusterNode(
            configuration: settings.cluster, store: store, transport: transport, clock: clock, logger: logger)
        var driver: SettlementDriver?
        var providerHTTP: HTTPClient?
        var paymentProvider: StripeShapedClient?
        if let provider = settings.provider {
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            providerHTTP = http
            var driverSettings = SettlementDriver.Settings()
            driverSettings.unsafeFreshKeys = provider.unsafeFreshKeys
            if provider.unsafeFreshKeys {
                logger.critical(
                    "IDEMPOTENCY KEYS ARE NOT THE LOGGED ONES (debug.unsafeFreshIdempotencyKeys): retries can charge twice"
                )
            }
            let client = StripeShapedClient(
                baseURL: provider.url, secretKey: provider.secretKey, http: http, timeout: provider.callTimeout)
            paymentProvider = client
            driver = SettlementDriver(
                node: node, provider: client, store: store, users: store, clock: clock, logger: logger,
                settings: driverSettings)
        } else {
            logger.notice(
                "no payment provider (payments.provider.url): sold lots wait, unpaid, until one is configured")
        }
        // Webhook deliveries go where an admin said and nowhere else: no redirects.
        let webhookHTTP = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        let webhooks = WebhookDispatcher(node: node, store: store, http: webhookHTTP, clock: clock, logger: logger)
        let archiver = AuctionArchiver(node: node, store: store, users: store, clock: clock, logger: logger)
        let api = GatewayAPI(
            node: node, users: store, events: store, webhooks: store, archive: store, tokens: tokens, clock: clock,
            configuration: settings.api, provider: paymentProvider)
        var bootstrapAdmin: (@Sendable () async throws -> Void)?
        if let admin = settings.bootstrapAdmin {
            let (username, password) = (admin.username, admin.password)
            bootstrapAdmin = { try await api.ensureAdmin(username: username, password: password) }
        }
        let cluster = ClusterService(
            node: node, transport: transport, store: store, bind: settings.clusterBind, logger: logger,
            bootstrapAdmin: bootstrapAdmin, settlementDriver: driver, webhookDispatcher: webhooks, archiver: archiver)
        let router = api.responder(isReady: { await cluster.isReady })
        // Keep-alive connections idle for a minute are closed (event streams send a heartbeat every
        // 15 s, WebSockets a ping every 30 s); the connection guard caps connections and bounds how
        // long a request may take to arrive.
        let http = Application(
            router: router, server: api.httpServer(),
            configuration: .init(address: .hostname(settings.httpHost, port: settings.httpPort)), logger: logger)
        services.append(.init(service: cluster))
        services.append(.init(service: http))
        logger.notice(
            "starting",
            metadata: [
                "cluster": "\(settings.cluster.address)", "http": "\(settings.httpHost):\(settings.httpPort)",
                "seeds": "\(settings.cluster.seeds)",
            ])
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await sqlite?.close()
            try? await providerHTTP?.shutdown()
            try? await webhookHTTP.shutdown()
            throw error
        }
        try? await providerHTTP?.shutdown()
        try? await webhookHTTP.shutdown()
        // Every store connection is closed before the process ends (PostgreSQL's client is a
        // service of the group and has stopped with it).
        await sqlite?.close()
    }
}

/// Runs the cluster side of a node: migrations, the transport, the membership loop; on graceful
/// shutdown, leaves the cluster before stopping.
actor ClusterService: Service {
    let node: ClusterNode
    let transport: ClusterTransport
    let store: any EventStore
    let bind: (host: String, port: Int)
    let logger: Logger
    let bootstrapAdmin: (@Sendable () async throws -> Void)?
    let settlementDriver: SettlementDriver?
    let webhookDispatcher: WebhookDispatcher?
    let archiver: AuctionArchiver?
    private(set) var isReady = false

    init(
        node: ClusterNode, transport: ClusterTransport, store: any EventStore, bind: (host: String, port: Int),
        logger: Logger,
        bootstrapAdmin: (@Sendable () async throws -> Void)?, settlementDriver: SettlementDriver? = nil,
        webhookDispatcher: WebhookDispatcher? = nil, archiver: AuctionArchiver? = nil
    ) {
        self.node = node
        self.transport = transport
        self.store = store
        self.bind = bind
        self.logger = logger
        self.bootstrapAdmin = bootstrapAdmin
        self.settlementDriver = settlementDriver
        self.webhookDispatcher = webhookDispatcher
        self.archiver = archiver
    }

    func run() async throws {
        try await migrateWithRetry()
        try await bootstrapAdmin?()
        let (transport, node, bind) = (self.transport, self.node, self.bind)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                do {
                    try await transport.serve(host: bind.host, port: bind.port)
                } catch  where Task.isCancelled {
                    // Shutting down.
                }
            }
            group.addTask { await node.run() }
            if let driver = settlementDriver { group.addTask { await driver.run() } }
            if let webhooks = webhookDispatcher { group.addTask { await webhooks.run() } }
            if let archiver { group.addTask { await archiver.run() } }
            isReady = true
            try? await gracefulShutdown()
            isReady = false
            logger.notice("leaving the cluster")
            await node.leave()
            group.cancelAll()
        }
        transport.shutdown()
    }

    /// The store may come up after the node (a fresh cluster): retry for a while, then fail.
    private func migrateWithRetry() async throws {
        var attempt = 0
        while true {
            do {
                try await store.migrate()
                return
            } catch {
                attempt += 1
                guard attempt < 30 else { throw error }
                logger.warning("store not ready, retrying", metadata: ["error": "\(error)"])
                try await Task.sleep(for: .seconds(1))
            }
        }
    }
}
