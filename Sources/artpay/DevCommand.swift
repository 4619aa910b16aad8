import ArgumentParser

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Run a local ArtPay with demo data (see README).")

    func run() async throws {
        throw CleanExit.message("not yet")
    }
}
