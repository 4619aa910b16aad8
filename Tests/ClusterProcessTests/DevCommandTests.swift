import ArtPayClient
import Foundation
import TestSupport
import Testing

/// `artpay dev` as a terminal runs it: in a process group of its own, Ctrl-C sent to the whole
/// group. After one of its nodes was killed with kill -9, it must still exit and leave no process
/// behind (it used to wait forever on the killed child).
@Suite(.serialized) struct DevCommandTests {
    @Test(.timeLimit(.minutes(3))) func ctrlC_afterANodeWasKilled_stopsEverything() async throws {
        let binary = try NodeProcess.binary
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-dev-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let clusterPort = try await freePort(on: "127.0.0.1")
        let httpPort = try await freePort(on: "127.0.0.1")
        let output = directory.appendingPathComponent("dev.out").path
        let dev = try spawnInOwnGroup(
            binary,
            [
                "dev", "--data-directory", directory.path, "--cluster-port", "\(clusterPort)", "--http-port",
                "\(httpPort)", "--minutes", "5",
            ], output: output)
        defer { kill(-dev, SIGKILL) }  // only if the test failed half-way: the group is this test's own

        // The welcome names each node's pid.
        var nodes: [pid_t] = []
        try await eventually("artpay dev prints its nodes", timeout: .seconds(120)) {
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            nodes = text.split(separator: "\n").compactMap { line in
                guard line.contains(": http://127.0.0."), let range = line.range(of: "pid ") else { return nil }
                return pid_t(line[range.upperBound...].prefix { $0.isNumber })
            }
            return nodes.count == 3
        }
        #expect(nodes.allSatisfy { $0 > 0 && kill($0, 0) == 0 })
        kill(nodes[1], SIGKILL)
        try await eventually("the killed node is gone") { !isAlive(nodes[1]) }
        // As a person would: Ctrl-C once the status line shows the node down.
        try await eventually("the status line shows the node down") {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("node-2 DOWN")
        }

        kill(-dev, SIGINT)  // Ctrl-C: the terminal signals the whole foreground group
        try await eventually("artpay dev exits") { hasExited(dev) }
        for node in nodes {
            try await eventually("node \(node) is gone, reaped") { !isAlive(node) }
        }
    }

    /// The payment path as `artpay dev` shows it, through nodes that are not the lot's owner: a
    /// lot bought by alice is paid with her saved card and the seller's payout recorded; carol's
    /// saved card declines, she defaults and is blocked from bidding on every node with the token
    /// she holds, bob takes the second-chance offer and his saved card pays; an admin lifts the
    /// block and carol bids again.
    @Test(.timeLimit(.minutes(4))) func devShowsThePaymentPath_savedCards_aDefault_andASecondChance() async throws {
        let binary = try NodeProcess.binary
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("artpay-dev-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let clusterPort = try await freePort(on: "127.0.0.1")
        let httpPort = try await freePort(on: "127.0.0.1")
        let output = directory.appendingPathComponent("dev.out").path
        // The first lot closes 40 s after it is created: the bids below come well before its last
        // 30 s, so no soft-close extension moves the hammer.
        let dev = try spawnInOwnGroup(
            binary,
            [
                "dev", "--data-directory", directory.path, "--cluster-port", "\(clusterPort)", "--http-port",
                "\(httpPort)", "--minutes", "5", "--first-close-seconds", "40", "--payment-deadline-seconds", "4",
            ], output: output)
        defer { kill(-dev, SIGKILL) }
        var lots: [String] = []
        do {
            try await eventually("artpay dev prints its sale", timeout: .seconds(120)) {
                let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
                guard text.contains("Paying:") else { return false }
                lots = text.split(separator: "\n").compactMap { line in
                    let words = line.split(separator: " ")
                    guard let first = words.first, first.hasPrefix("evening-"), first.contains("-lot-") else {
                        return nil
                    }
                    return String(first)
                }
                return lots.count == 5
            }
        } catch {
            // What dev printed: the directory goes with the test.
            let printed = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            Issue.record("artpay dev printed:\n\(printed.suffix(3_000))")
            throw error
        }
        let node = (1...3).map { "http://127.0.0.\($0):\(httpPort)" }
        let psp = APIClient(base: "http://127.0.0.4:\(httpPort)", token: "sk_test_artpay_dev")
        func on(_ index: Int, as user: String) async throws -> APIClient {
            try await APIClient(base: node[index]).loggedIn(user, "\(user)-password")
        }
        func settlement(of lot: String, as client: APIClient) async throws -> [String: Any]? {
            let mine = try await client.call("GET", "/v1/me/settlements")
            return (mine["settlements"] as? [[String: Any]])?.first { $0["auctionId"] as? String == lot }
        }

        // Alice buys lot 2 now on node 2; her saved visa pays, with no call from her.
        let alice = try await on(1, as: "alice")
        try await alice.call(
            "POST", "/v1/auctions/\(lots[1])/buy-now",
            json: ["bidId": "alice-buys", "price": 60_000, "currency": "GBP"])
        let aliceOnNode3 = APIClient(base: node[2], token: alice.token)
        var paid: [String: Any] = [:]
        try await eventually("alice's lot is settled", every: .milliseconds(250)) {
            paid = try await settlement(of: lots[1], as: aliceOnNode3) ?? [:]
            return paid["state"] as? String == "settled"
        }
        #expect(paid["paymentMethod"] as? String == "pm_card_visa")
        #expect(paid["captured"] as? Int == paid["total"] as? Int)
        #expect(paid["total"] as? Int == 75_600, "60,000 hammer + 26 % premium")
        #expect(paid["sellerPayout"] as? Int == 54_000, "hammer less the 10 % commission")
        let ledger = (try await psp.call("GET", "/v1/sandbox/ledger")["data"] as? [[String: Any]]) ?? []
        let alicesLot = ledger.filter { ($0["metadata"] as? [String: String])?["auction"] == lots[1] }
        #expect(alicesLot.compactMap { $0["kind"] as? String } == ["authorization", "capture"], "\(alicesLot)")

        // Bob, then carol, bid on lot 1; carol wins, her saved card declines, she does not pay.
        let bob = try await on(0, as: "bob")
        let carol = try await on(2, as: "carol")
        try await bob.call(
            "POST", "/v1/auctions/\(lots[0])/bids", json: ["bidId": "bob-1", "maximum": 130_000, "currency": "EUR"])
        try await carol.call(
            "POST", "/v1/auctions/\(lots[0])/bids", json: ["bidId": "carol-1", "maximum": 200_000, "currency": "EUR"])
        var offered: [String: Any] = [:]
        try await eventually("the lot closes, carol defaults, bob gets an offer", every: .milliseconds(250)) {
            offered = try await settlement(of: lots[0], as: bob) ?? [:]
            return offered["state"] as? String == "second_chance_offered"
        }
        let offer = try #require(offered["secondChanceOffer"] as? [String: Any])
        #expect(offer["price"] as? Int == 120_000, "without carol's bids bob meets the reserve")
        for index in 0..<3 {
            let refused = APIClient(base: node[index], token: carol.token)
            do {
                try await refused.call(
                    "POST", "/v1/auctions/\(lots[2])/bids",
                    json: ["bidId": "carol-blocked-\(index)", "maximum": 300_000, "currency": "USD"])
                Issue.record("node \(index + 1) took a bid from a blocked buyer")
            } catch let failure as APIClient.Failure {
                #expect(failure.status == 403 && failure.body["code"] as? String == "bidding_blocked", "\(failure)")
            }
        }
        try await bob.call("POST", "/v1/me/settlements/\(lots[0])/second-chance", json: ["accept": true])
        var second: [String: Any] = [:]
        try await eventually("bob's saved card pays the second chance", every: .milliseconds(250)) {
            second = try await settlement(of: lots[0], as: bob) ?? [:]
            return second["state"] as? String == "settled"
        }
        #expect(second["round"] as? Int == 2)
        #expect(second["paymentMethod"] as? String == "pm_card_mastercard")
        #expect(second["hammer"] as? Int == 120_000)

        // An admin lifts carol's block; her old token bids again, on any node.
        let admin = try await on(1, as: "admin")
        let carolId = try #require(try await carol.call("GET", "/v1/me")["id"] as? String)
        let lifted = try await admin.call("DELETE", "/v1/users/\(carolId)/bidding-blocks")
        #expect(lifted["blockedFromBidding"] as? Bool == false)
        let again = try await APIClient(base: node[0], token: carol.token).call(
            "POST", "/v1/auctions/\(lots[2])/bids",
            json: ["bidId": "carol-again", "maximum": 300_000, "currency": "USD"])
        #expect(again["outcome"] as? String == "leading")

        kill(-dev, SIGINT)
        try await eventually("artpay dev exits") { hasExited(dev) }
    }

    /// Starts `executable` as the leader of a new process group, output to `output`.
    private func spawnInOwnGroup(_ executable: String, _ arguments: [String], output: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw HarnessError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// Whether our child `pid` has ended (reaping it).
    private func hasExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        return result == pid || (result == -1 && errno == ECHILD)
    }

    /// Whether `pid` exists and is not a zombie (a grandchild: `artpay dev` must have reaped it).
    private func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        // The state follows the parenthesised command name.
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != nil && state != "Z" && state != "X"
    }
}
