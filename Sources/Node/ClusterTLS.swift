public import AuctionCore
import Crypto
public import Foundation
public import NIOSSL
import SwiftASN1
import X509

/// Mutual TLS for cluster traffic: every node has a certificate, issued by a cluster CA, that
/// names its node id (`artpay://node/<id>` as a URI subject alternative name). Both ends of a
/// cluster connection present their certificate and verify the other's chain against the trusted
/// CAs (TLS 1.3 only); after the handshake each side requires that the node id the peer claims is
/// the one its certificate names. So nothing crosses the cluster port in clear, and a peer can
/// speak only for the node its certificate was issued to.
///
/// Several CAs may be trusted at once: that is how a CA is rotated without downtime (trust the new
/// one everywhere, reissue node certificates from it, then stop trusting the old one).
public struct ClusterTLS: Sendable {
    /// The URI prefix of the subject alternative name that carries a node id.
    public static let nodeURIPrefix = "artpay://node/"

    public let trustedAuthorities: [NIOSSLCertificate]
    public let certificateChain: [NIOSSLCertificate]
    public let privateKey: NIOSSLPrivateKey
    /// The node id this node's own certificate names.
    public let node: NodeID

    /// From PEM text: the trusted CA certificates, this node's certificate (then any
    /// intermediates) and its private key. Fails when the certificate names no node id.
    public init(authoritiesPEM: [String], certificatePEM: String, privateKeyPEM: String) throws(ClusterTLSError) {
        do {
            trustedAuthorities = try authoritiesPEM.flatMap {
                try NIOSSLCertificate.fromPEMBytes(Array($0.utf8))
            }
            certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificatePEM.utf8))
            privateKey = try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem)
        } catch {
            throw .unreadable("\(error)")
        }
        guard !trustedAuthorities.isEmpty else { throw .unreadable("no trusted CA certificate") }
        guard let leaf = certificateChain.first, let node = Self.nodeID(in: leaf) else {
            throw .noNodeIdentity
        }
        self.node = node
    }

    /// The context of the accepting side: presents this node's certificate and requires one
    /// from the peer, verified against the trusted CAs.
    public func serverContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: certificateChain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        restrict(&configuration)
        return try NIOSSLContext(configuration: configuration)
    }

    /// The context of the connecting side: the same, the other way round.
    public func clientContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateChain = certificateChain.map { .certificate($0) }
        configuration.privateKey = .privateKey(privateKey)
        restrict(&configuration)
        return try NIOSSLContext(configuration: configuration)
    }

    private func restrict(_ configuration: inout TLSConfiguration) {
        configuration.minimumTLSVersion = .tlsv13
        configuration.maximumTLSVersion = .tlsv13
        configuration.trustRoots = .certificates(trustedAuthorities)
        // The peer is identified by the node id in its certificate (checked after the handshake),
        // not by a host name: nodes are reached by whatever address membership gossips.
        configuration.certificateVerification = .noHostnameVerification
    }

    /// The node id a certificate names, if it names exactly one.
    public static func nodeID(in certificate: NIOSSLCertificate) -> NodeID? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der),
            let names = try? parsed.extensions.subjectAlternativeNames
        else { return nil }
        let ids: [String] = names.compactMap { name in
            guard case .uniformResourceIdentifier(let uri) = name, uri.hasPrefix(nodeURIPrefix) else { return nil }
            return String(uri.dropFirst(nodeURIPrefix.count))
        }
        guard ids.count == 1 else { return nil }
        return NodeID(rawValue: ids[0])
    }
}

/// Why the cluster's TLS material could not be used.
public enum ClusterTLSError: Error, Equatable, CustomStringConvertible {
    case unreadable(String)
    /// The node certificate carries no (or more than one) `artpay://node/<id>` name.
    case noNodeIdentity
    /// The certificate is another node's: a node runs only with its own.
    case certificateNamesAnotherNode(certificate: NodeID, node: NodeID)

    public var description: String {
        switch self {
        case .unreadable(let reason): "cluster TLS material is unreadable: \(reason)"
        case .noNodeIdentity: "the node certificate names no node id (artpay://node/<id>); issue it with artpay certs"
        case .certificateNamesAnotherNode(let certificate, let node):
            "the node certificate names node '\(certificate)', but this node is '\(node)'"
        }
    }
}

/// Issues the cluster's certificates, the way `cockroach cert` does: a CA, then one certificate
/// per node naming its id and the hosts it listens on. ECDSA P-256, PEM.
public enum ClusterCertificates {
    /// A certificate and its private key, PEM.
    public struct Issued: Sendable {
        public var certificatePEM: String
        public var privateKeyPEM: String

        public init(certificatePEM: String, privateKeyPEM: String) {
            self.certificatePEM = certificatePEM
            self.privateKeyPEM = privateKeyPEM
        }
    }

    /// A new cluster CA, valid from a minute ago for `days`.
    public static func createAuthority(
        name: String = "ArtPay cluster CA", days: Int = 3_650, now: Date = Date()
    ) throws -> Issued {
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("ArtPay")
            CommonName(name)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey), notValidBefore: now.addingTimeInterval(-60),
            notValidAfter: now.addingTimeInterval(Double(days) * 86_400), issuer: subject, subject: subject,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: Certificate.PublicKey(key.publicKey))
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        return Issued(
            certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// A certificate for node `id`, listening on `hosts` (IP addresses or DNS names), issued by
    /// `authority`, valid from a minute ago for `days` (negative: already expired, for tests).
    public static func issueNode(
        id: NodeID, hosts: [String], authority: Issued, days: Int = 365, now: Date = Date()
    ) throws -> Issued {
        let issuerCertificate = try Certificate(pemEncoded: authority.certificatePEM)
        let issuerKey = try P256.Signing.PrivateKey(pemRepresentation: authority.privateKeyPEM)
        let key = P256.Signing.PrivateKey()
        let subject = try DistinguishedName {
            OrganizationName("ArtPay")
            CommonName("node \(id.rawValue)")
        }
        var names: [GeneralName] = [.uniformResourceIdentifier(ClusterTLS.nodeURIPrefix + id.rawValue)]
        for host in hosts {
            if let address = IPv4Address(host) {
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(address.bytes))))
            } else {
                names.append(.dnsName(host))
            }
        }
        let (notBefore, notAfter) =
            days >= 0
            ? (now.addingTimeInterval(-60), now.addingTimeInterval(Double(days) * 86_400))
            : (now.addingTimeInterval(Double(days) * 86_400 * 2), now.addingTimeInterval(Double(days) * 86_400))
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(),
            publicKey: Certificate.PublicKey(key.publicKey), notValidBefore: notBefore, notValidAfter: notAfter,
            issuer: issuerCertificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames(names)
                AuthorityKeyIdentifier(
                    keyIdentifier: try issuerCertificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            },
            issuerPrivateKey: Certificate.PrivateKey(issuerKey))
        return Issued(
            certificatePEM: try certificate.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// Writes a CA and one certificate per node into `directory` (`ca.crt`, `ca.key`,
    /// `<id>.node.crt`, `<id>.node.key`), for a local cluster (`artpay dev`, tests, benchmarks).
    public static func writeLocalCluster(
        _ nodes: [(id: NodeID, host: String)], into directory: String
    ) throws -> (authority: String, nodes: [NodeID: (certificate: String, key: String)]) {
        let authority = try createAuthority(name: "ArtPay local cluster CA", days: 30)
        let authorityPath = directory + "/ca.crt"
        try authority.certificatePEM.write(toFile: authorityPath, atomically: true, encoding: .utf8)
        var written: [NodeID: (String, String)] = [:]
        for node in nodes {
            let issued = try issueNode(id: node.id, hosts: [node.host], authority: authority, days: 30)
            let certificate = directory + "/\(node.id.rawValue).node.crt"
            let key = directory + "/\(node.id.rawValue).node.key"
            try issued.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
            try writePrivate(issued.privateKeyPEM, to: key)
            written[node.id] = (certificate, key)
        }
        return (authorityPath, written)
    }

    /// The `cluster.tls` object of a node configuration for files `writeLocalCluster` wrote.
    public static func configJSON(authority: String, _ files: (certificate: String, key: String)) -> String {
        #"{ "caFiles": ["\#(authority)"], "certificateFile": "\#(files.certificate)", "keyFile": "\#(files.key)" }"#
    }

    /// Writes a private key readable by the owner only.
    public static func writePrivate(_ text: String, to path: String) throws {
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        else {
            throw ClusterTLSError.unreadable("cannot write \(path)")
        }
    }
}

/// A dotted IPv4 address, for a certificate's IP address name.
private struct IPv4Address {
    var bytes: [UInt8]

    init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard let byte = UInt8(part) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }
}
