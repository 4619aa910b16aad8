public import NIOCore

/// Length-prefixed framing of cluster connections: a 4-byte big-endian length, then that many
/// bytes. A frame longer than `maximumFrameLength` is refused before it is buffered, and the
/// connection closed: a peer cannot make a node hold more than one maximum frame per connection.
public struct ClusterFrameCoder: ByteToMessageDecoder, MessageToByteEncoder, Sendable {
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer

    public static let maximumFrameLength = 1 << 20

    public struct FrameTooLarge: Error, Hashable, Sendable {
        public var length: Int
    }

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length <= Self.maximumFrameLength else { throw FrameTooLarge(length: Int(length)) }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        let frame = buffer.readSlice(length: Int(length))!
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        try decode(context: context, buffer: &buffer)
    }

    public func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        precondition(data.readableBytes <= Self.maximumFrameLength, "frames are at most 1 MiB")
        out.writeInteger(UInt32(data.readableBytes))
        out.writeImmutableBuffer(data)
    }
}
