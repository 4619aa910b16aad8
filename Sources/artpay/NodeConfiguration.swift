import AuctionCore
import ClusterCore
import Configuration
import Foundation
import Gateway
import Node
import Storage

/// Everything `artpay node` needs, read from a JSON file in `cluster-config/` with environment
/// overrides: a key `cluster.secret` is overridden by `ARTPAY_CLUSTER_SECRET`, `http.port` by
/// `ARTPAY_HTTP_PORT`, and so on (`NodeSettings.environmentName(of:)`).
struct NodeSettings: Sendable {
    enum Store: Sendable {
        case postgres(host: String, port: Int, user: String, password: String?, database: String)
        case sqlite(path: String)
    }

    var cluster: ClusterNode.Configuration
    var clusterBind: (host: String, port: Int)
    var httpHost: String
    var httpPort: Int
    var secret: ClusterSecret
    /// `cluster.tls.*`: the node's certificate and key and the trusted cluster CAs (required).
    var tls: ClusterTLS
    var store: Store
    /// `store.callTimeoutSeconds`: how long one store call may take before it counts as failed.
    var storeCallTimeout: Duration
    var signingKey: TokenAuthority.SigningKey
    var verificationKeys: [TokenAuthority.VerificationKey]
    var tokenLifetime: Duration
    var api: GatewayAPI.Configuration
    var bootstrapAdmin: (username: String, password: String)?
    /// `debug.unsafeDisableFencing`: for showing the chaos checker catch two writers; never in service.
    var fencing: Fencing
    /// `payments.provider.*`: where settlements are paid; nil leaves sold lots waiting (due).
    var provider: ProviderSettings?

    struct ProviderSettings: Sendable {
        var url: String
        var secretKey: String
        var callTimeout: Duration
        /// `debug.unsafeFreshIdempotencyKeys`: see `SettlementDriver.Settings.unsafeFreshKeys`.
        var unsafeFreshKeys: Bool
    }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    static func load(file: String) async throws -> NodeSettings {
        let reader = ConfigReader(providers: [
            EnvironmentVariablesProvider().prefixKeys(with: "artpay"),
            try await FileProvider<JSONSnapshot>(filePath: .init(file)),
        ])
        func required(_ key: String) throws -> String {
            guard let value = reader.string(forKey: ConfigKey(key)), !value.isEmpty else {
                throw Invalid(
                    description:
                        "\(file): '\(key)' is missing (or set \(NodeSettings.environmentName(of: key)))"
                )
            }
            return value
        }
        func address(_ text: String, _ key: String) throws -> NodeAddress {
            let parts = text.split(separator: ":")
            guard parts.count == 2, let port = Int(parts[1]), (1...65_535).contains(port) else {
                throw Invalid(description: "\(file): '\(key)' must be host:port, got '\(text)'")
            }
            return NodeAddress(host: String(parts[0]), port: port)
        }

        guard let id = NodeID(rawValue: try required("node.id")) else {
            throw Invalid(description: "\(file): 'node.id' must be 1–64 of A–Z a–z 0–9 _ - . :")
        }
        let roleNames = reader.stringArray(forKey: "node.roles") ?? NodeRole.allCases.map(\.rawValue)
        var roles = Set<NodeRole>()
        for name in roleNames {
            guard let role = NodeRole(rawValue: name) else {
                throw Invalid(description: "\(file): unknown role '\(name)' (gateway, auctions, payments)")
            }
            roles.insert(role)
        }
        let bindHost = reader.string(forKey: "cluster.host", default: "127.0.0.1")
        let bindPort = reader.int(forKey: "cluster.port", default: 7_100)
        let advertised = try address(
            reader.string(forKey: "cluster.advertise", default: "\(bindHost):\(bindPort)"), "cluster.advertise")
        let seeds = try (reader.stringArray(forKey: "cluster.seeds") ?? []).map { try address($0, "cluster.seeds") }
        guard let secret = ClusterSecret(try required("cluster.secret")) else {
            throw Invalid(
                description: "\(file): 'cluster.secret' must have at least \(ClusterSecret.minimumLength) characters")
        }
        var membership = MembershipSettings()
        membership.probeInterval = .milliseconds(reader.int(forKey: "membership.probeIntervalMs", default: 300))
        membership.pingTimeout = .milliseconds(reader.int(forKey: "membership.pingTimeoutMs", default: 120))
        membership.suspicionMinimum = .milliseconds(reader.int(forKey: "membership.suspicionMinimumMs", default: 1_000))
        membership.suspicionMaximum = .milliseconds(reader.int(forKey: "membership.suspicionMaximumMs", default: 3_000))

        let store: Store
        switch reader.string(forKey: "store.kind", default: "postgres") {
        case "postgres":
            store = .postgres(
                host: reader.string(forKey: "store.postgres.host", default: "127.0.0.1"),
                port: reader.int(forKey: "store.postgres.port", default: 5_432),
                user: reader.string(forKey: "store.postgres.user", default: "postgres"),
                password: reader.string(forKey: "store.postgres.password", isSecret: true),
                database: reader.string(forKey: "store.postgres.database", default: "postgres"))
        case "sqlite":
            store = .sqlite(path: reader.string(forKey: "store.sqlite.path", default: ".artpay/cluster.sqlite"))
        case let other:
            throw Invalid(description: "\(file): 'store.kind' must be postgres or sqlite, got '\(other)'")
        }
        func readFile(_ path: String, _ key: String) throws -> String {
            let resolved =
                path.hasPrefix("/")
                ? path : ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(path)
            guard let text = try? String(contentsOfFile: resolved, encoding: .utf8) else {
                throw Invalid(description: "\(file): '\(key)' names \(resolved), which cannot be read")
            }
            return text
        }
        // Cluster TLS (paths relative to the configuration file, like the signing key).
        let authorityFiles = reader.stringArray(forKey: "cluster.tls.caFiles") ?? []
        guard !authorityFiles.isEmpty else {
            throw Invalid(
                description:
                    "\(file): 'cluster.tls.caFiles' is missing: cluster traffic is mutual TLS; create a CA and node "
                    + "certificates with `artpay certs create-ca` and `artpay certs create-node`")
        }
        let tls: ClusterTLS
        do {
            tls = try ClusterTLS(
                authoritiesPEM: try authorityFiles.map { try readFile($0, "cluster.tls.caFiles") },
                certificatePEM: try readFile(
                    try required("cluster.tls.certificateFile"), "cluster.tls.certificateFile"),
                privateKeyPEM: try readFile(try required("cluster.tls.keyFile"), "cluster.tls.keyFile"))
        } catch let error as ClusterTLSError {
            throw Invalid(description: "\(file): \(error)")
        }
        guard tls.node == id else {
            throw Invalid(
                description: "\(file): the node certificate is for node '\(tls.node)', but 'node.id' is '\(id)'")
        }
        let signingKid = reader.string(forKey: "auth.signingKid", default: "k1")
        let signingPEM: String
        if let inline = reader.string(forKey: "auth.signingKey", isSecret: true) {
            signingPEM = inline
        } else {
            signingPEM = try readFile(try required("auth.signingKeyFile"), "auth.signingKeyFile")
        }
        var verification: [TokenAuthority.VerificationKey] = []
        for entry in reader.stringArray(forKey: "auth.verificationKeys") ?? [] {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else {
                throw Invalid(description: "\(file): 'auth.verificationKeys' entries are kid=path-to-public-key.pem")
            }
            verification.append(.init(kid: parts[0], publicKeyPEM: try readFile(parts[1], "auth.verificationKeys")))
        }
        var admin: (String, String)?
        if let username = reader.string(forKey: "auth.admin.username"),
            let password = reader.string(forKey: "auth.admin.password", isSecret: true)
        {
            admin = (username, password)
        }
        func seconds(_ key: ConfigKey, default value: Double) -> Duration {
            .milliseconds(Int64(max(0.1, reader.double(forKey: key, default: value)) * 1_000))
        }
        var api = GatewayAPI.Configuration(
            passwordCost: UInt8(clamping: reader.int(forKey: "auth.passwordCost", default: 12)),
            rateLimit: .init(
                capacity: reader.int(forKey: "http.rateLimit.capacity", default: 120),
                refillPerSecond: reader.double(forKey: "http.rateLimit.refillPerSecond", default: 20)),
            requestTimeout: .milliseconds(
                Int64(reader.double(forKey: "http.requestTimeoutSeconds", default: 15) * 1_000)),
            connections: ConnectionLimits(
                maximumConnections: max(16, reader.int(forKey: "http.maxConnections", default: 10_000)),
                maximumConnectionsPerAddress: max(
                    0, reader.int(forKey: "http.maxConnectionsPerAddress", default: 1_024)),
                requestHeadTimeout: seconds("http.requestHeadTimeoutSeconds", default: 10),
                requestBodyTimeout: seconds("http.requestBodyTimeoutSeconds", default: 30),
                idleTimeout: seconds("http.idleTimeoutSeconds", default: 60)),
            streams: StreamLimits(
                maximumStreams: max(1, reader.int(forKey: "http.maxStreams", default: 5_000)),
                maximumStreamsPerCaller: max(1, reader.int(forKey: "http.maxStreamsPerCaller", default: 32))),
            userCacheAge: seconds("auth.userCacheSeconds", default: 10),
            loginLock: LoginLockPolicy(
                freeFailures: max(1, reader.int(forKey: "auth.loginLock.freeFailures", default: 5)),
                firstLock: seconds("auth.loginLock.firstSeconds", default: 1),
                maximumLock: seconds("auth.loginLock.maximumSeconds", default: 900)),
            admission: AdmissionLimits(
                maximumInFlight: max(0, reader.int(forKey: "http.admission.maxInFlight", default: 64)),
                maximumWait: .milliseconds(
                    Int64(max(0, reader.int(forKey: "http.admission.maxWaitMilliseconds", default: 20)))),
                maximumWaiting: max(0, reader.int(forKey: "http.admission.maxWaiting", default: 256))))
        var tiers: [FeeSchedule.Tier] = []
        for entry in reader.stringArray(forKey: "payments.buyerPremiumTiers") ?? [] {
            // "upTo:basisPoints", the last one ":basisPoints" (open-ended).
            let parts = entry.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 2, let rate = Int64(parts[1]), parts[0].isEmpty || Int64(parts[0]) != nil else {
                throw Invalid(
                    description: "\(file): 'payments.buyerPremiumTiers' entries are upToMajorUnits:basisPoints, "
                        + "the last one :basisPoints")
            }
            tiers.append(.init(upToMajorUnits: Int64(parts[0]), rateBasisPoints: rate))
        }
        let fees = FeeSchedule(
            buyerPremium: tiers.isEmpty ? FeeSchedule.standard.buyerPremium : tiers,
            sellerCommissionBasisPoints: Int64(
                reader.int(forKey: "payments.sellerCommissionBasisPoints", default: 1_000)),
            paymentDeadline: seconds("payments.paymentDeadlineSeconds", default: 3 * 86_400),
            secondChanceWindow: seconds("payments.secondChanceWindowSeconds", default: 2 * 86_400))
        do {
            try fees.validate()
        } catch {
            throw Invalid(description: "\(file): payments: \(error)")
        }
        api.fees = fees
        api.webhookSecrets = reader.stringArray(forKey: "payments.webhookSecrets", isSecret: true) ?? []
        api.crossOrigin = CrossOriginPolicy(
            allowedOrigins: Set(reader.stringArray(forKey: "http.cors.allowedOrigins") ?? []))
        api.metricsBearerToken = reader.string(forKey: "http.metricsBearerToken", isSecret: true)
        // Every node of a cluster serves HTTP on the same port unless told otherwise.
        api.clusterHTTPPort = reader.int(
            forKey: "http.clusterPort", default: reader.int(forKey: "http.port", default: 8_100))
        var provider: ProviderSettings?
        if let url = reader.string(forKey: "payments.provider.url") {
            guard let key = reader.string(forKey: "payments.provider.secretKey", isSecret: true), !key.isEmpty else {
                throw Invalid(description: "\(file): 'payments.provider.url' needs 'payments.provider.secretKey'")
            }
            provider = ProviderSettings(
                url: url, secretKey: key, callTimeout: seconds("payments.provider.timeoutSeconds", default: 10),
                unsafeFreshKeys: reader.bool(forKey: "debug.unsafeFreshIdempotencyKeys", default: false))
        }
        return NodeSettings(
            cluster: ClusterNode.Configuration(
                id: id, address: advertised, roles: roles, seeds: seeds, membership: membership),
            clusterBind: (bindHost, bindPort), httpHost: reader.string(forKey: "http.host", default: "127.0.0.1"),
            httpPort: reader.int(forKey: "http.port", default: 8_100), secret: secret, tls: tls, store: store,
            storeCallTimeout: .milliseconds(
                Int64(max(0.1, reader.double(forKey: "store.callTimeoutSeconds", default: 5)) * 1_000)),
            signingKey: .init(kid: signingKid, privateKeyPEM: signingPEM), verificationKeys: verification,
            tokenLifetime: .seconds(reader.int(forKey: "auth.tokenLifetimeSeconds", default: 3_600)), api: api,
            bootstrapAdmin: admin,
            fencing: reader.bool(forKey: "debug.unsafeDisableFencing", default: false) ? .unsafelyDisabled : .enforced,
            provider: provider)
    }
}

extension NodeSettings {
    /// The environment variable that overrides `key`: `ARTPAY_`, then the key in upper case with an
    /// underscore for each dot and between the words of a camelCase name, as the configuration
    /// reader's environment provider looks it up (`cluster.tls.certificateFile` →
    /// `ARTPAY_CLUSTER_TLS_CERTIFICATE_FILE`).
    static func environmentName(of key: String) -> String {
        var name = "ARTPAY_"
        var previous: Character?
        for character in key {
            if character == "." {
                name += "_"
            } else {
                if character.isUppercase, let previous, previous.isLowercase || previous.isNumber { name += "_" }
                name += character.uppercased()
            }
            previous = character
        }
        return name
    }
}
