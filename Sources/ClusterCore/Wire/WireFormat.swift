public import NIOCore

/// Why bytes from a peer were refused. Every decoding failure is one of these, never a crash: the
/// connection that sent them is closed and the refusal counted.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The frame ended before a field did.
    case truncated
    /// A length, count or value is out of its bounds.
    case outOfBounds(String)
    /// A tag that this version does not know.
    case unknownTag(String, UInt8)
    /// A field that parsed but is not valid (an identifier with forbidden characters, say).
    case invalid(String)
    /// Bytes left over after the message.
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .truncated: "truncated frame"
        case .outOfBounds(let what): "out of bounds: \(what)"
        case .unknownTag(let what, let tag): "unknown \(what) tag \(tag)"
        case .invalid(let what): "invalid \(what)"
        case .trailingBytes(let count): "\(count) trailing bytes"
        }
    }
}

/// Writing the primitive fields of the cluster wire format (big-endian integers, length-prefixed
/// UTF-8 strings with a bound).
extension ByteBuffer {
    public mutating func writeWireString(_ value: String) {
        precondition(value.utf8.count <= Int(UInt16.max), "wire strings are at most 65535 bytes")
        writeInteger(UInt16(value.utf8.count))
        writeString(value)
    }

    public mutating func writeWireOptional<T>(_ value: T?, _ write: (inout ByteBuffer, T) -> Void) {
        if let value {
            writeInteger(UInt8(1))
            write(&self, value)
        } else {
            writeInteger(UInt8(0))
        }
    }

    public mutating func writeWireBool(_ value: Bool) {
        writeInteger(UInt8(value ? 1 : 0))
    }
}

/// Reading them back, with bounds checked and a typed error for anything malformed.
extension ByteBuffer {
    public mutating func readWire<T: FixedWidthInteger>(_: T.Type = T.self) throws(WireError) -> T {
        guard let value = readInteger(as: T.self) else { throw .truncated }
        return value
    }

    public mutating func readWireString(maximumBytes: Int) throws(WireError) -> String {
        let length = Int(try readWire(UInt16.self))
        guard length <= maximumBytes else { throw .outOfBounds("string of \(length) bytes") }
        guard let value = readString(length: length) else { throw .truncated }
        return value
    }

    public mutating func readWireBool() throws(WireError) -> Bool {
        switch try readWire(UInt8.self) {
        case 0: return false
        case 1: return true
        case let other: throw .unknownTag("bool", other)
        }
    }

    public mutating func readWireOptional<T>(_ read: (inout ByteBuffer) throws(WireError) -> T) throws(WireError) -> T?
    {
        try readWireBool() ? try read(&self) : nil
    }

    public mutating func readWireCount(maximum: Int, _ what: String) throws(WireError) -> Int {
        let count = Int(try readWire(UInt16.self))
        guard count <= maximum else { throw .outOfBounds("\(count) \(what)") }
        return count
    }

    /// Fails when bytes are left after a complete message.
    public func expectFullyRead() throws(WireError) {
        guard readableBytes == 0 else { throw .trailingBytes(readableBytes) }
    }
}
