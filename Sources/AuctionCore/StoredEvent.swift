/// One event of an auction's log, with where it stands and who wrote it.
public struct StoredEvent: Hashable, Sendable {
    public var auction: AuctionID
    public var seq: Int64
    /// The epoch the writer held: non-decreasing along `seq`.
    public var epoch: Epoch
    public var event: AuctionEvent

    public init(auction: AuctionID, seq: Int64, epoch: Epoch, event: AuctionEvent) {
        self.auction = auction
        self.seq = seq
        self.epoch = epoch
        self.event = event
    }
}
