import AuctionCore
import ClusterCore
import Testing

/// Fixed nodes and a manual time line, SWIMInstanceTests style: feed an input, switch on directives.
@Suite struct MembershipInstanceTests {
    static func member(
        _ n: Int, generation: UInt64 = 1, incarnation: UInt64 = 0, status: MemberStatus = .alive,
        by suspecter: Int? = nil
    ) -> Member {
        Member(
            id: NodeID(rawValue: "node-\(n)")!, generation: generation,
            address: NodeAddress(host: "127.0.0.\(n)", port: 7_000),
            incarnation: incarnation, status: status, suspectedBy: suspecter.map { NodeID(rawValue: "node-\($0)")! })
    }

    static let t0 = Timestamp(millisecondsSinceEpoch: 1_000_000)

    /// An instance for node 1 that already knows nodes 2…`others + 1` as alive.
    static func instance(knowing others: Int = 3) -> MembershipInstance {
        var instance = MembershipInstance(myself: member(1), seeds: [], now: t0, seed: 42)
        let state = (2...(others + 1)).map { member($0) }
        _ = instance.receive(
            MembershipMessage(sender: member(2), kind: .syncReply(state)), from: member(2).address, now: t0)
        return instance
    }

    /// Ticks at every deadline up to `end`, then at `end`, as the shell does: a tick long after
    /// its deadline tells the instance that this node did not run (see `localHealth`).
    /// With `answeredBy`, the members at those addresses ack every ping at once (a healthy rest of
    /// the cluster); others stay silent.
    static func advance(
        _ instance: inout MembershipInstance, to end: Timestamp, answeredBy answering: Set<NodeAddress> = []
    ) -> [MembershipDirective] {
        var out: [MembershipDirective] = []
        func answer(_ directives: [MembershipDirective], at now: Timestamp) {
            out += directives
            for (message, address) in sends(directives) where answering.contains(address) {
                guard case .ping(let sequence) = message.kind,
                    let peer = instance.members.first(where: { $0.address == address })
                else { continue }
                answer(
                    instance.receive(
                        MembershipMessage(sender: peer, kind: .ack(sequence: sequence)), from: address, now: now),
                    at: now)
            }
        }
        var steps = 0
        while instance.nextDeadline < end, steps < 10_000 {
            let now = instance.nextDeadline
            answer(instance.tick(now: now), at: now)
            steps += 1
        }
        answer(instance.tick(now: end), at: end)
        return out
    }

    static func addresses(_ members: Int...) -> Set<NodeAddress> { Set(members.map { member($0).address }) }

    static func sends(_ directives: [MembershipDirective]) -> [(MembershipMessage, NodeAddress)] {
        directives.compactMap { if case .send(let message, let to) = $0 { (message, to) } else { nil } }
    }

    /// After a heal, node 1 (which saw node 2 cut off and dead) hears node 2's stale suspicion of
    /// node 3: it no longer sees a majority alive, so it declares nobody dead — but it keeps its
    /// shards, since a suspicion is refuted within a probe period and dropping them would move
    /// every one of them twice.
    @Test func aStaleSuspicion_stopsDeathsButNotShardOwnership() {
        var instance = Self.instance(knowing: 2)
        #expect(instance.seesMajority && instance.holdsShards)
        _ = instance.receive(
            MembershipMessage(sender: Self.member(3), kind: .syncReply([Self.member(2, status: .dead, by: 3)])),
            from: Self.member(3).address, now: Self.t0)
        #expect(instance.seesMajority && instance.holdsShards, "2 of 3 alive")
        _ = instance.receive(
            MembershipMessage(sender: Self.member(3), kind: .syncReply([Self.member(3, status: .suspect, by: 2)])),
            from: Self.member(3).address, now: Self.t0)
        #expect(instance.members.first { $0.id.rawValue == "node-3" }?.status == .suspect)
        #expect(!instance.seesMajority, "only itself alive")
        #expect(instance.holdsShards, "a suspect still counts for keeping shards")
        _ = instance.receive(
            MembershipMessage(sender: Self.member(3), kind: .syncReply([Self.member(3, status: .dead, by: 1)])),
            from: Self.member(3).address, now: Self.t0)
        #expect(!instance.holdsShards, "a death takes them away")
    }

    /// One frame with node 3 "dead" at generation 2^64−1 would have buried node 3 for good (no real
    /// record outranks it); a record from a generation far in the future, or with an absurd
    /// incarnation, is ignored — about others, about the sender, about this node itself.
    @Test func implausibleRecords_areIgnored() {
        var instance = Self.instance(knowing: 3)
        let forged = [
            Self.member(3, generation: .max, status: .dead, by: 2),
            Self.member(4, incarnation: MembershipInstance.maximumIncarnation + 1, status: .dead, by: 2),
            Self.member(1, generation: .max, status: .dead, by: 2),
        ]
        let out = instance.receive(
            MembershipMessage(sender: Self.member(2), kind: .syncReply(forged)), from: Self.member(2).address,
            now: Self.t0)
        #expect(!out.contains { if case .changed = $0 { true } else { false } })
        #expect(instance.members.allSatisfy { $0.status == .alive && $0.generation == 1 }, "\(instance.members)")
        // A sender claiming a generation a day and more ahead of this clock is not taken either.
        let ahead = Self.t0.advanced(by: MembershipInstance.maximumGenerationLead + .seconds(1))
        _ = instance.receive(
            MembershipMessage(sender: Self.member(2, generation: UInt64(ahead.millisecondsSinceEpoch)), kind: .alive),
            from: Self.member(2).address, now: Self.t0)
        #expect(instance.members.first { $0.id.rawValue == "node-2" }?.generation == 1)
        // Within the lead (a restart on a clock a little ahead) it is.
        _ = instance.receive(
            MembershipMessage(sender: Self.member(2, generation: 2_000_000), kind: .alive),
            from: Self.member(2).address, now: Self.t0)
        #expect(instance.members.first { $0.id.rawValue == "node-2" }?.generation == 2_000_000)
    }

    @Test func onPing_repliesWithAckOfTheSameSequence() {
        var instance = Self.instance()
        let out = Self.sends(
            instance.receive(
                MembershipMessage(sender: Self.member(3), kind: .ping(sequence: 77)), from: Self.member(3).address,
                now: Self.t0))
        #expect(out.count == 1)
        #expect(out.first?.0.kind == .ack(sequence: 77))
        #expect(out.first?.1 == Self.member(3).address)
    }

    @Test func missedPing_sendsIndirectProbes_thenSuspectsAtTheEndOfThePeriod() {
        var instance = Self.instance()
        let pings = Self.sends(instance.tick(now: Self.t0))
        guard let (ping, target) = pings.first(where: { if case .ping = $0.0.kind { true } else { false } }) else {
            Issue.record("no ping in \(pings)")
            return
        }
        guard case .ping(let sequence) = ping.kind else { return }
        let indirect = Self.sends(instance.tick(now: Self.t0.advanced(by: instance.settings.pingTimeout)))
        let requests = indirect.filter { if case .pingRequest(sequence, _) = $0.0.kind { true } else { false } }
        #expect(requests.count == 2, "the two other members are asked to probe")
        #expect(!requests.contains { $0.1 == target })
        let end = instance.tick(now: Self.t0.advanced(by: instance.settings.probeInterval))
        let suspected = end.contains {
            if case .changed(_, let to) = $0 { to.address == target && to.status == .suspect } else { false }
        }
        #expect(suspected)
    }

    @Test func ackRelayedByAHelper_keepsTheTargetAlive() {
        var instance = Self.instance()
        let pings = Self.sends(instance.tick(now: Self.t0))
        guard let (ping, target) = pings.first, case .ping(let sequence) = ping.kind else {
            Issue.record("no ping")
            return
        }
        _ = instance.tick(now: Self.t0.advanced(by: instance.settings.pingTimeout))
        let helper = Self.member(target == Self.member(2).address ? 3 : 2)
        _ = instance.receive(
            MembershipMessage(sender: helper, kind: .ack(sequence: sequence)), from: helper.address,
            now: Self.t0.advanced(by: .milliseconds(200)))
        let end = instance.tick(now: Self.t0.advanced(by: instance.settings.probeInterval))
        #expect(!end.contains { if case .changed(_, let to) = $0 { to.status == .suspect } else { false } })
    }

    @Test func pingRequest_pingsTheTarget_andRelaysItsAck() {
        var instance = Self.instance()
        let origin = Self.member(2)
        let out = Self.sends(
            instance.receive(
                MembershipMessage(sender: origin, kind: .pingRequest(sequence: 5, target: Self.member(3))),
                from: origin.address, now: Self.t0))
        guard let (ping, to) = out.first, case .ping(let relaySequence) = ping.kind else {
            Issue.record("no ping: \(out)")
            return
        }
        #expect(to == Self.member(3).address)
        let relayed = Self.sends(
            instance.receive(
                MembershipMessage(sender: Self.member(3), kind: .ack(sequence: relaySequence)), from: to, now: Self.t0))
        #expect(relayed.first?.0.kind == .ack(sequence: 5))
        #expect(relayed.first?.1 == origin.address)
    }

    @Test func suspicionOfMyself_isRefutedWithAHigherIncarnation() {
        var instance = Self.instance()
        let claim = Self.member(1, incarnation: 0, status: .suspect)
        let out = instance.receive(
            MembershipMessage(sender: Self.member(2), kind: .ack(sequence: 0), gossip: [claim]),
            from: Self.member(2).address, now: Self.t0)
        #expect(instance.myself.incarnation == 1)
        #expect(instance.myself.status == .alive)
        #expect(out.contains(.changed(from: Self.member(1), to: Self.member(1, incarnation: 1))))
        let broadcast = Self.sends(out).filter { $0.0.kind == .alive }
        #expect(Set(broadcast.map(\.1)) == Set((2...4).map { Self.member($0).address }), "refuted to everyone at once")
        // The refutation travels with the next message.
        let next = Self.sends(instance.tick(now: Self.t0))
        #expect(
            next.allSatisfy {
                $0.0.gossip.contains(Self.member(1, incarnation: 1)) || $0.0.sender == Self.member(1, incarnation: 1)
            })
    }

    @Test func deathOfMyself_isAnsweredWithANewGeneration() {
        var instance = Self.instance()
        let claim = Self.member(1, status: .dead)
        _ = instance.receive(
            MembershipMessage(sender: Self.member(2), kind: .ack(sequence: 0), gossip: [claim]),
            from: Self.member(2).address, now: Self.t0)
        #expect(instance.myself.generation > 1)
        #expect(instance.myself.status == .alive)
        #expect(instance.myself.supersedes(claim))
    }

    @Test func refutation_cancelsTheSuspicion() {
        var instance = Self.instance()
        let suspect = Self.member(2, status: .suspect, by: 3)
        _ = instance.receive(
            MembershipMessage(sender: Self.member(3), kind: .ack(sequence: 0), gossip: [suspect]),
            from: Self.member(3).address, now: Self.t0)
        #expect(instance.member(suspect.id)?.status == .suspect)
        _ = instance.receive(
            MembershipMessage(sender: Self.member(2, incarnation: 1), kind: .ping(sequence: 1)), from: suspect.address,
            now: Self.t0.advanced(by: .milliseconds(100)))
        let later = instance.tick(now: Self.t0.advanced(by: instance.settings.suspicionMaximum * 2))
        #expect(instance.member(suspect.id)?.status == .alive)
        #expect(!later.contains { if case .changed(_, let to) = $0 { to.status == .dead } else { false } })
    }

    @Test func independentSuspicions_shortenTheTimeout_echoesDoNot() {
        var lone = Self.instance()
        var confirmed = Self.instance()
        let suspect = Self.member(2, status: .suspect, by: 3)
        for (index, var instance) in [lone, confirmed].enumerated() {
            _ = instance.receive(
                MembershipMessage(sender: Self.member(3), kind: .ack(sequence: 0), gossip: [suspect]),
                from: Self.member(3).address, now: Self.t0)
            // Node 4 repeats node 3's claim (an echo) or raises its own (a confirmation).
            let claim = index == 1 ? Self.member(2, status: .suspect, by: 4) : suspect
            _ = instance.receive(
                MembershipMessage(sender: Self.member(4), kind: .ack(sequence: 0), gossip: [claim]),
                from: Self.member(4).address, now: Self.t0)
            if index == 0 { lone = instance } else { confirmed = instance }
        }
        // Two independent suspicions of the two that could confirm (K = 2): the minimum timeout.
        let atMinimum = Self.t0.advanced(by: confirmed.settings.suspicionMinimum)
        _ = Self.advance(&lone, to: atMinimum, answeredBy: Self.addresses(3, 4))
        _ = Self.advance(&confirmed, to: atMinimum, answeredBy: Self.addresses(3, 4))
        #expect(lone.member(suspect.id)?.status == .suspect)
        #expect(confirmed.member(suspect.id)?.status == .dead)
    }

    @Test func precedence_followsSWIM() {
        let alive0 = Self.member(2)
        let alive1 = Self.member(2, incarnation: 1)
        let suspect0 = Self.member(2, status: .suspect)
        let suspect1 = Self.member(2, incarnation: 1, status: .suspect)
        let dead0 = Self.member(2, status: .dead)
        let left0 = Self.member(2, status: .left)
        let restarted = Self.member(2, generation: 2)
        #expect(suspect0.supersedes(alive0))
        #expect(!alive0.supersedes(suspect0))
        #expect(alive1.supersedes(suspect0))
        #expect(suspect1.supersedes(alive1))
        #expect(!suspect0.supersedes(alive1))
        #expect(!dead0.supersedes(alive1), "a death on an old suspicion does not override a refutation")
        #expect(Self.member(2, incarnation: 1, status: .dead).supersedes(alive1))
        #expect(dead0.supersedes(suspect0))
        #expect(!alive1.supersedes(dead0))
        #expect(!dead0.supersedes(left0))
        #expect(restarted.supersedes(dead0))
        #expect(!dead0.supersedes(restarted))
    }

    @Test func leave_tellsEveryLiveMember_andGoesQuiet() {
        var instance = Self.instance()
        let out = Self.sends(instance.leave(now: Self.t0))
        #expect(Set(out.map(\.1)) == Set((2...4).map { Self.member($0).address }))
        #expect(out.allSatisfy { $0.0.kind == .leave && $0.0.sender.status == .left })
        #expect(instance.tick(now: Self.t0.advanced(by: .seconds(10))).isEmpty)
    }

    @Test func joining_asksTheSeeds_untilAMemberAnswers() {
        var instance = MembershipInstance(
            myself: Self.member(1), seeds: [Self.member(2).address], now: Self.t0, seed: 1)
        let first = Self.sends(instance.tick(now: Self.t0))
        #expect(first.contains { if case .sync = $0.0.kind { $0.1 == Self.member(2).address } else { false } })
        let retry = Self.sends(instance.tick(now: Self.t0.advanced(by: instance.settings.probeInterval)))
        #expect(retry.contains { if case .sync = $0.0.kind { true } else { false } })
        _ = instance.receive(
            MembershipMessage(sender: Self.member(2), kind: .syncReply([Self.member(2), Self.member(3)])),
            from: Self.member(2).address, now: Self.t0)
        #expect(instance.members.map(\.id) == [1, 2, 3].map { Self.member($0).id })
    }

    // MARK: - Local health (Lifeguard)

    /// A tick a second after its deadline: this node was starved. The probe that was open meanwhile
    /// is not held against its target (its ack may be queued behind the stall), the node's health
    /// drops, and it probes more slowly until answers come back in time.
    @Test func aLateTick_isThisNodesFault_notTheTargets() {
        var instance = Self.instance()
        let pings = Self.sends(instance.tick(now: Self.t0))
        guard let (_, target) = pings.first else {
            Issue.record("no ping")
            return
        }
        #expect(instance.localHealth == 0)
        let late = instance.tick(now: Self.t0.advanced(by: .seconds(1)))
        #expect(instance.localHealth == 1)
        #expect(!late.contains { if case .changed(_, let to) = $0 { to.status == .suspect } else { false } })
        #expect(!Self.sends(late).contains { if case .pingRequest = $0.0.kind { true } else { false } })
        // The ping timeout is now twice as long: no indirect probe after one base timeout.
        let afterOneTimeout = Self.t0.advanced(by: .seconds(1)).advanced(by: instance.settings.pingTimeout)
        #expect(instance.nextDeadline > afterOneTimeout)
        // Its target answers the queued ping: back to full health, no suspicion.
        guard case .ping(let sequence) = pings.first!.0.kind else { return }
        let targetMember = instance.members.first { $0.address == target }!
        _ = instance.receive(
            MembershipMessage(sender: targetMember, kind: .ack(sequence: sequence)), from: target,
            now: Self.t0.advanced(by: .milliseconds(1_010)))
        #expect(instance.localHealth == 0)
        let rest = Self.advance(&instance, to: Self.t0.advanced(by: .seconds(3)))
        #expect(!rest.contains { if case .changed(_, let to) = $0 { to.address == target } else { false } })
    }

    /// A stall does not turn a suspicion into a death: the suspect's refutation may be waiting in
    /// this node's inbox, so the suspicion gets the stalled time back.
    @Test func aStall_givesSuspicionsTheirTimeBack() {
        var instance = Self.instance()
        _ = instance.receive(
            MembershipMessage(
                sender: Self.member(3), kind: .ack(sequence: 0), gossip: [Self.member(2, status: .suspect, by: 3)]),
            from: Self.member(3).address, now: Self.t0)
        let stalled = Self.t0.advanced(by: instance.settings.suspicionMaximum + .seconds(1))
        let afterStall = instance.tick(now: stalled)
        #expect(!afterStall.contains { if case .changed(_, let to) = $0 { to.status == .dead } else { false } })
        #expect(instance.member(Self.member(2).id)?.status == .suspect)
        for (message, address) in Self.sends(afterStall) where address != Self.member(2).address {
            guard case .ping(let sequence) = message.kind else { continue }
            let peer = instance.members.first { $0.address == address }!
            _ = instance.receive(
                MembershipMessage(sender: peer, kind: .ack(sequence: sequence)), from: address, now: stalled)
        }
        // Without a refutation it still dies, one suspicion timeout after the stall.
        let later = Self.advance(
            &instance, to: stalled.advanced(by: instance.settings.suspicionMaximum * 2),
            answeredBy: Self.addresses(3, 4))
        #expect(
            later.contains {
                if case .changed(_, let to) = $0 { to.id == Self.member(2).id && to.status == .dead } else { false }
            })
    }

    /// Refuting a suspicion of itself also lowers this node's health: others found it slow.
    @Test func refutingASuspicion_lowersHealth_andAnsweredProbesRestoreIt() {
        var instance = Self.instance()
        _ = instance.receive(
            MembershipMessage(
                sender: Self.member(2), kind: .ack(sequence: 0), gossip: [Self.member(1, status: .suspect, by: 2)]),
            from: Self.member(2).address, now: Self.t0)
        #expect(instance.localHealth == 1)
        let pings = Self.sends(instance.tick(now: Self.t0))
        guard let (ping, target) = pings.first(where: { if case .ping = $0.0.kind { true } else { false } }),
            case .ping(let sequence) = ping.kind
        else {
            Issue.record("no ping in \(pings)")
            return
        }
        let answering = instance.members.first { $0.address == target }!
        _ = instance.receive(
            MembershipMessage(sender: answering, kind: .ack(sequence: sequence)), from: target,
            now: Self.t0.advanced(by: .milliseconds(5)))
        #expect(instance.localHealth == 0)
    }

    /// A node that hears nobody doubts itself once three probes fail after the last word it heard
    /// (it gives up its shards); one whose probes fail but which hears a majority — late acks, their
    /// pings — does not: the others are slow, this node is not cut off. Two nodes of five that
    /// still hear each other are a minority and doubt themselves.
    @Test func onlyNotHearingAMajority_makesANodeDoubtItself() {
        var silent = Self.instance(knowing: 2)
        var hearing = Self.instance(knowing: 2)
        var minority = Self.instance(knowing: 4)
        let period = silent.settings.probeInterval
        for round in 0...8 {
            let at = Self.t0.advanced(by: period * round)
            _ = Self.advance(&silent, to: at)
            _ = Self.advance(&hearing, to: at)
            _ = Self.advance(&minority, to: at)
            // A ping from node 3 (node 2 for the minority) in every period.
            _ = hearing.receive(
                MembershipMessage(sender: Self.member(3), kind: .ping(sequence: UInt64(100 + round))),
                from: Self.member(3).address, now: at.advanced(by: .milliseconds(10)))
            _ = minority.receive(
                MembershipMessage(sender: Self.member(2), kind: .ping(sequence: UInt64(100 + round))),
                from: Self.member(2).address, now: at.advanced(by: .milliseconds(10)))
        }
        let end = Self.t0.advanced(by: period * 9)
        _ = Self.advance(&silent, to: end)
        _ = Self.advance(&hearing, to: end)
        _ = Self.advance(&minority, to: end)
        #expect(!silent.holdsShards)
        #expect(hearing.holdsShards)
        #expect(!minority.holdsShards)
    }

}
