import ArgumentParser
import AuctionCore
import Foundation
import Node

/// `artpay certs`: the cluster's TLS certificates, the way `cockroach cert` issues them — a cluster
/// CA, then one certificate per node naming its id and hosts. Cluster traffic is mutual TLS: every
/// node needs its certificate and key and trusts the CA (`cluster.tls` in its configuration).
struct CertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs", abstract: "Create the cluster CA and node certificates (mutual TLS between nodes).",
        subcommands: [CreateAuthority.self, CreateNode.self])

    struct CreateAuthority: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-ca",
            abstract: "Create a cluster CA: <dir>/ca.crt (give to every node) and <dir>/ca.key (keep offline).")

        @Option(help: "Directory of the certificates.") var dir = ".artpay/certs"
        @Option(help: "Days the CA is valid.") var days = 3_650
        @Flag(help: "Replace an existing CA (every node certificate must then be issued again).") var force = false

        func run() throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let keyPath = dir + "/ca.key"
            if FileManager.default.fileExists(atPath: keyPath), !force {
                throw ValidationError("\(keyPath) exists; pass --force to replace the CA")
            }
            let authority = try ClusterCertificates.createAuthority(days: days)
            try authority.certificatePEM.write(toFile: dir + "/ca.crt", atomically: true, encoding: .utf8)
            try ClusterCertificates.writePrivate(authority.privateKeyPEM, to: keyPath)
            print("wrote \(dir)/ca.crt and \(keyPath) (mode 0600)")
        }
    }

    struct CreateNode: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-node",
            abstract: "Issue a node certificate from the CA in <dir>: <dir>/<id>.node.crt and .key.")

        @Option(help: "Directory of the certificates (with ca.crt and ca.key).") var dir = ".artpay/certs"
        @Option(help: "The node id (node.id in its configuration).") var id: String
        @Option(name: .customLong("host"), help: "An address or DNS name the node listens on (repeatable).")
        var hosts: [String] = []
        @Option(help: "Days the certificate is valid.") var days = 365

        func run() throws {
            guard let node = NodeID(rawValue: id) else {
                throw ValidationError("'\(id)' is not a node id (1–64 of A–Z a–z 0–9 _ - . :)")
            }
            guard let certificate = try? String(contentsOfFile: dir + "/ca.crt", encoding: .utf8),
                let key = try? String(contentsOfFile: dir + "/ca.key", encoding: .utf8)
            else { throw ValidationError("no CA in \(dir): run `artpay certs create-ca --dir \(dir)` first") }
            let issued = try ClusterCertificates.issueNode(
                id: node, hosts: hosts, authority: .init(certificatePEM: certificate, privateKeyPEM: key), days: days)
            let certificatePath = dir + "/\(id).node.crt"
            let keyPath = dir + "/\(id).node.key"
            try issued.certificatePEM.write(toFile: certificatePath, atomically: true, encoding: .utf8)
            try ClusterCertificates.writePrivate(issued.privateKeyPEM, to: keyPath)
            print("wrote \(certificatePath) and \(keyPath) (mode 0600); in the node's configuration:")
            print(#"  "cluster": { …, "tls": "# + ClusterCertificates.configJSON(authority: dir + "/ca.crt", (certificatePath, keyPath)) + " }")
        }
    }
}
