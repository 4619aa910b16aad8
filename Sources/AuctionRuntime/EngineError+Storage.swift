import AuctionCore
import Storage

extension EngineError {
    /// A store failure as the engine answers it: fenced means another node owns the shard now.
    init(_ error: StorageError, shard: ShardID) {
        switch error {
        case .fenced: self = .notOwner(shard)
        default: self = .storeUnavailable(error.description)
        }
    }
}
