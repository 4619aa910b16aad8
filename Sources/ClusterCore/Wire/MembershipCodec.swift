public import AuctionCore
public import NIOCore

/// The binary form of membership messages. Bounds: identifiers and hosts ≤ 255 bytes, a view ≤
/// `maximumMembers`, gossip ≤ `maximumGossip`.
public enum MembershipCodec {
    public static let maximumMembers = 256
    public static let maximumGossip = 32

    public static func write(_ message: MembershipMessage, to buffer: inout ByteBuffer) {
        writeMember(message.sender, to: &buffer)
        switch message.kind {
        case .ping(let sequence):
            buffer.writeInteger(UInt8(1))
            buffer.writeInteger(sequence)
        case .ack(let sequence):
            buffer.writeInteger(UInt8(2))
            buffer.writeInteger(sequence)
        case .pingRequest(let sequence, let target):
            buffer.writeInteger(UInt8(3))
            buffer.writeInteger(sequence)
            writeMember(target, to: &buffer)
        case .sync(let members):
            buffer.writeInteger(UInt8(4))
            writeMembers(members, to: &buffer)
        case .syncReply(let members):
            buffer.writeInteger(UInt8(5))
            writeMembers(members, to: &buffer)
        case .alive:
            buffer.writeInteger(UInt8(6))
        case .leave:
            buffer.writeInteger(UInt8(7))
        }
        writeMembers(Array(message.gossip.prefix(maximumGossip)), to: &buffer)
    }

    public static func read(from buffer: inout ByteBuffer) throws(WireError) -> MembershipMessage {
        let sender = try readMember(from: &buffer)
        let kind: MembershipMessage.Kind
        switch try buffer.readWire(UInt8.self) {
        case 1: kind = .ping(sequence: try buffer.readWire())
        case 2: kind = .ack(sequence: try buffer.readWire())
        case 3: kind = .pingRequest(sequence: try buffer.readWire(), target: try readMember(from: &buffer))
        case 4: kind = .sync(try readMembers(from: &buffer, maximum: maximumMembers))
        case 5: kind = .syncReply(try readMembers(from: &buffer, maximum: maximumMembers))
        case 6: kind = .alive
        case 7: kind = .leave
        case let tag: throw .unknownTag("membership message", tag)
        }
        let gossip = try readMembers(from: &buffer, maximum: maximumGossip)
        return MembershipMessage(sender: sender, kind: kind, gossip: gossip)
    }

    static func writeMembers(_ members: [Member], to buffer: inout ByteBuffer) {
        let bounded = members.prefix(maximumMembers)
        buffer.writeInteger(UInt16(bounded.count))
        for member in bounded { writeMember(member, to: &buffer) }
    }

    static func readMembers(from buffer: inout ByteBuffer, maximum: Int) throws(WireError) -> [Member] {
        let count = try buffer.readWireCount(maximum: maximum, "members")
        var members: [Member] = []
        members.reserveCapacity(count)
        for _ in 0..<count { members.append(try readMember(from: &buffer)) }
        return members
    }

    public static func writeNodeID(_ id: NodeID, to buffer: inout ByteBuffer) {
        buffer.writeWireString(id.rawValue)
    }

    public static func readNodeID(from buffer: inout ByteBuffer) throws(WireError) -> NodeID {
        let raw = try buffer.readWireString(maximumBytes: 64)
        guard let id = NodeID(rawValue: raw) else { throw .invalid("node id") }
        return id
    }

    static func writeMember(_ member: Member, to buffer: inout ByteBuffer) {
        writeNodeID(member.id, to: &buffer)
        buffer.writeInteger(member.generation)
        buffer.writeWireString(member.address.host)
        buffer.writeInteger(UInt16(clamping: member.address.port))
        var roles: UInt8 = 0
        for (bit, role) in NodeRole.allCases.enumerated() where member.roles.contains(role) { roles |= 1 << bit }
        buffer.writeInteger(roles)
        buffer.writeInteger(member.incarnation)
        buffer.writeInteger(member.status.rawValue)
        buffer.writeWireOptional(member.suspectedBy) { writeNodeID($1, to: &$0) }
    }

    static func readMember(from buffer: inout ByteBuffer) throws(WireError) -> Member {
        let id = try readNodeID(from: &buffer)
        let generation: UInt64 = try buffer.readWire()
        let host = try buffer.readWireString(maximumBytes: 255)
        guard !host.isEmpty else { throw .invalid("host") }
        let port = Int(try buffer.readWire(UInt16.self))
        let roleBits: UInt8 = try buffer.readWire()
        let roles = Set(NodeRole.allCases.enumerated().filter { roleBits & (1 << $0.offset) != 0 }.map(\.element))
        let incarnation: UInt64 = try buffer.readWire()
        let statusRaw: UInt8 = try buffer.readWire()
        guard let status = MemberStatus(rawValue: statusRaw) else { throw .unknownTag("member status", statusRaw) }
        let suspectedBy = try buffer.readWireOptional { (buffer: inout ByteBuffer) throws(WireError) in
            try readNodeID(from: &buffer)
        }
        return Member(
            id: id, generation: generation, address: NodeAddress(host: host, port: port), roles: roles,
            incarnation: incarnation, status: status, suspectedBy: suspectedBy)
    }
}
