public import AuctionCore
import Foundation
public import Node

/// The cluster CA of a test process and certificates from it: cluster traffic is mutual TLS, so
/// every in-process node, test client and node process of a test gets one.
public enum TestCertificates {
    /// One CA per test process (valid for a day).
    public static let authority: ClusterCertificates.Issued = try! ClusterCertificates.createAuthority(
        name: "ArtPay test CA", days: 1)

    /// TLS material for `node`, from `authority` (the test CA unless given), valid `days` (negative:
    /// expired).
    public static func tls(
        for node: NodeID, host: String = "127.0.0.1", authority: ClusterCertificates.Issued = authority,
        days: Int = 1
    ) -> ClusterTLS {
        let issued = try! ClusterCertificates.issueNode(id: node, hosts: [host], authority: authority, days: days)
        return try! ClusterTLS(
            authoritiesPEM: [Self.authority.certificatePEM], certificatePEM: issued.certificatePEM,
            privateKeyPEM: issued.privateKeyPEM)
    }

    /// Writes the test CA and `node`'s certificate and key into `directory`; returns the
    /// `cluster.tls` object for its configuration file.
    public static func configJSON(for node: NodeID, host: String, in directory: String) throws -> String {
        let authorityPath = directory + "/ca.crt"
        try authority.certificatePEM.write(toFile: authorityPath, atomically: true, encoding: .utf8)
        let issued = try ClusterCertificates.issueNode(id: node, hosts: [host], authority: authority, days: 1)
        let certificate = directory + "/\(node.rawValue).node.crt"
        let key = directory + "/\(node.rawValue).node.key"
        try issued.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
        try ClusterCertificates.writePrivate(issued.privateKeyPEM, to: key)
        return ClusterCertificates.configJSON(authority: authorityPath, (certificate, key))
    }
}
