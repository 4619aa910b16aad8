import ArgumentParser

/// The `artpay` command line: runs the product and its tools.
@main
struct ArtPay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "artpay",
        abstract: "ArtPay: a clustered bid engine for real-time art auctions.",
        subcommands: [
            NodeCommand.self, DevCommand.self, LoginCommand.self, AuctionsCommand.self, BidCommand.self,
            WatchCommand.self,
            NotificationsCommand.self, SettlementsCommand.self, CheckCommand.self, ChaosCommand.self,
            KeygenCommand.self, CertsCommand.self, PSPCommand.self,
            BenchCommand.self,
        ])
}
