import ArgumentParser
import Foundation
import Gateway

/// `artpay keygen --out FILE`: a new ES256 private key for signing access tokens (PEM), and its
/// public key next to it (`FILE.pub`) for nodes that should only verify during a key rotation.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen", abstract: "Generate an ES256 key pair for signing access tokens.")

    @Option(help: "Where to write the private key (PEM, mode 0600); the public key goes to <out>.pub.")
    var out: String

    @Flag(help: "Replace an existing file.")
    var force = false

    func run() throws {
        if FileManager.default.fileExists(atPath: out), !force {
            throw ValidationError("\(out) exists; pass --force to replace it")
        }
        let directory = (out as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        let privateKey = TokenAuthority.generatePrivateKeyPEM()
        _ = FileManager.default.createFile(
            atPath: out, contents: Data(privateKey.utf8), attributes: [.posixPermissions: 0o600])
        try TokenAuthority.publicKeyPEM(ofPrivateKey: privateKey).write(
            toFile: out + ".pub", atomically: true, encoding: .utf8)
        print("wrote \(out) and \(out).pub")
    }
}
