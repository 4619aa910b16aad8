import AuctionCore
public import Foundation
import JWTKit
import Synchronization

/// Issues and verifies the API's access tokens: JWTs signed with ES256 (P-256), with `kid`, `sub`,
/// `name`, `roles`, `ver` (the user's token version), `iat` and `exp`.
///
/// Why this shape: several public keys are accepted at once (by `kid`) while one private key
/// signs, so keys rotate without logging anyone out; the algorithm is pinned — a token must say
/// `ES256` and name a known `kid` before its signature is even checked, so `none`, HMAC-with-the-
/// public-key and key-confusion tricks are refused.
public final class TokenAuthority: Sendable {
    public struct SigningKey: Sendable {
        public var kid: String
        public var privateKeyPEM: String

        public init(kid: String, privateKeyPEM: String) {
            self.kid = kid
            self.privateKeyPEM = privateKeyPEM
        }
    }

    public struct VerificationKey: Sendable {
        public var kid: String
        public var publicKeyPEM: String

        public init(kid: String, publicKeyPEM: String) {
            self.kid = kid
            self.publicKeyPEM = publicKeyPEM
        }
    }

    public enum Failure: Error, Hashable, Sendable {
        case malformed
        case wrongAlgorithm(String)
        case unknownKey
        case badSignature
        case expired
        case invalidClaims

        public var detail: String {
            switch self {
            case .malformed: "The token is not a JWT."
            case .wrongAlgorithm(let alg): "Tokens must be signed with ES256, not \(alg)."
            case .unknownKey: "The token's key id is not accepted."
            case .badSignature: "The token's signature does not verify."
            case .expired: "The token has expired."
            case .invalidClaims: "The token's claims are invalid."
            }
        }
    }

    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var name: String
        var roles: [String]
        /// The user's token version at issue (absent in tokens issued before versions existed: 0).
        var ver: Int64?
        var iat: IssuedAtClaim
        var exp: ExpirationClaim

        func verify(using algorithm: some JWTAlgorithm) throws {
            try exp.verifyNotExpired()
        }
    }

    private let keys: JWTKeyCollection
    private let signingKid: String
    private let acceptedKids: Set<String>
    public let lifetime: Duration
    /// Tokens whose signature verified, with what they proved: a token is immutable, so checking
    /// its signature again (an ES256 verification, the dearest step of a request) would prove the
    /// same. Only the expiry is checked again on each use.
    private let verified = Mutex(VerifiedTokens(capacity: 20_000))

    private init(keys: JWTKeyCollection, signingKid: String, acceptedKids: Set<String>, lifetime: Duration) {
        self.keys = keys
        self.signingKid = signingKid
        self.acceptedKids = acceptedKids
        self.lifetime = lifetime
    }

    /// - Parameters:
    ///   - signing: the key new tokens are signed with (its public half is accepted too).
    ///   - verification: further public keys still accepted (earlier signing keys, during rotation).
    public static func make(
        signing: SigningKey, verification: [VerificationKey] = [], lifetime: Duration = .seconds(3_600)
    ) async throws -> TokenAuthority {
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: try ES256PrivateKey(pem: signing.privateKeyPEM), kid: JWKIdentifier(string: signing.kid))
        for key in verification where key.kid != signing.kid {
            await keys.add(ecdsa: try ES256PublicKey(pem: key.publicKeyPEM), kid: JWKIdentifier(string: key.kid))
        }
        return TokenAuthority(
            keys: keys, signingKid: signing.kid, acceptedKids: Set([signing.kid] + verification.map(\.kid)),
            lifetime: lifetime)
    }

    /// A fresh ES256 private key in PEM form (for `artpay dev` and tests).
    public static func generatePrivateKeyPEM() -> String {
        ES256PrivateKey().pemRepresentation
    }

    /// The public key of a private key, in PEM form (to hand to nodes that only verify).
    public static func publicKeyPEM(ofPrivateKey pem: String) throws -> String {
        try ES256PrivateKey(pem: pem).publicKey.pemRepresentation
    }

    /// A token for `identity`, valid for `lifetime` from `now`.
    public func issue(for identity: Identity, now: Date = Date()) async throws -> (token: String, expiresAt: Date) {
        let expires = now.addingTimeInterval(Double(lifetime.components.seconds))
        let claims = Claims(
            sub: SubjectClaim(value: identity.userId.rawValue), name: identity.username,
            roles: identity.roles.map(\.rawValue).sorted(), ver: identity.tokenVersion, iat: IssuedAtClaim(value: now),
            exp: ExpirationClaim(value: expires))
        let token = try await keys.sign(claims, kid: JWKIdentifier(string: signingKid))
        return (token, expires)
    }

    /// The fields of a token's header read before its signature is checked.
    private struct Header: Decodable {
        var alg: String?
        var kid: String?
    }

    /// The identity a token proves, or why it proves none.
    public func verify(_ token: String, now: Date = Date()) async throws(Failure) -> Identity {
        switch verified.withLock({ $0.lookUp(token) }) {
        case (let identity, let expiresAt)? where now < expiresAt:
            return identity
        case _?:
            throw .expired
        case nil:
            break
        }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerData = Self.base64URLDecode(String(parts[0])),
            let header = try? JSONDecoder().decode(Header.self, from: headerData)
        else { throw .malformed }
        let alg = header.alg ?? "none"
        guard alg == "ES256" else { throw .wrongAlgorithm(alg) }
        guard let kid = header.kid, acceptedKids.contains(kid) else { throw .unknownKey }
        let claims: Claims
        do {
            claims = try await keys.verify(token, as: Claims.self)
        } catch let error as JWTError {
            switch error.errorType {
            case .claimVerificationFailure: throw .expired
            case .signatureVerificationFailed: throw .badSignature
            default: throw .badSignature
            }
        } catch {
            throw .badSignature
        }
        guard let userId = UserID(rawValue: claims.sub.value) else { throw .invalidClaims }
        let identity = Identity(
            userId: userId, username: claims.name, roles: Set(claims.roles.compactMap(Role.init(rawValue:))),
            tokenVersion: claims.ver ?? 0)
        verified.withLock { $0.remember(token, identity: identity, expiresAt: claims.exp.value) }
        return identity
    }

    static func base64URLDecode(_ text: String) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }
}

/// A bounded memory of verified tokens: two generations of at most `capacity` each; when the young
/// one is full it becomes the old one and the previous old one is forgotten, so tokens in use stay
/// (a hit in the old generation moves the token to the young one) and memory stays bounded.
struct VerifiedTokens {
    private var young: [String: (Identity, Date)] = [:]
    private var old: [String: (Identity, Date)] = [:]
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    mutating func lookUp(_ token: String) -> (Identity, Date)? {
        if let found = young[token] { return found }
        guard let found = old[token] else { return nil }
        insert(token, found)
        return found
    }

    mutating func remember(_ token: String, identity: Identity, expiresAt: Date) {
        insert(token, (identity, expiresAt))
    }

    private mutating func insert(_ token: String, _ entry: (Identity, Date)) {
        if young.count >= capacity {
            old = young
            young = [:]
        }
        young[token] = entry
    }
}
