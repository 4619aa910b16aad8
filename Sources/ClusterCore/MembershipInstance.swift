public import AuctionCore
import Foundation

/// The SWIM membership protocol of one node, as a pure state machine (after
/// apple/swift-cluster-membership's `SWIM.Instance`): inputs are messages and ticks with the
/// current time, outputs are directives (messages to send, membership changes). It never does
/// I/O, never reads a clock, and draws randomness only from the seed its shell gives it.
///
/// Protocol: every `probeInterval` the node pings the next member of a shuffled round-robin; if no
/// ack arrives within `pingTimeout` it asks `indirectProbes` others to ping it; without any ack by
/// the end of the period the member becomes `suspect`. A suspect that does not refute (by gossiping
/// a higher incarnation) within the Lifeguard timeout becomes `dead`. Changes are piggybacked on
/// every message. Every `syncInterval` the node pushes its whole view to a random live member and
/// to one seed or dead member's address (the other side of a partition), and pulls theirs; a node
/// that knows no live member, or has seeds that never answered, does so every probe interval.
/// That heals partitions and lets restarted nodes rejoin.
///
/// Invariants: the instance never marks itself suspect or dead — it refutes a suspicion with a
/// higher incarnation, and answers its own death by taking a new generation; a record is replaced
/// only by one that `supersedes` it; a suspicion expires into death only if it is still the
/// current record (a refutation cancels it).
public struct MembershipInstance: Sendable {
    public let settings: MembershipSettings
    public private(set) var myself: Member

    private struct Record: Sendable {
        var member: Member
        var suspectedSince: Timestamp?
        var confirmations: Set<NodeID> = []
    }

    private struct Probe: Sendable {
        var target: NodeID
        var sequence: UInt64
        var indirectAt: Timestamp
        var indirectSent = false
        /// Whether a stall already gave this probe its time back (once only: under a steady lag
        /// a probe of a crashed member must still end).
        var extended = false
        var acked = false
    }

    private struct Relay: Sendable {
        var origin: NodeAddress
        var originSequence: UInt64
        var expiresAt: Timestamp
    }

    private var records: [NodeID: Record] = [:]
    private var seeds: [NodeAddress]
    /// Seeds not yet known as a live member: asked every probe interval until they answer, so
    /// nodes started from different seeds never stay separate islands.
    private var unansweredSeeds: Set<NodeAddress>
    private var random: SeededRandom
    private var sequence: UInt64 = 0
    private var probe: Probe?
    private var nextProbeAt: Timestamp
    private var nextSyncAt: Timestamp
    private var probeOrder: [NodeID] = []
    private var relays: [UInt64: Relay] = [:]
    /// Set while this node reaches no majority: its suspicions restart when it reaches one again.
    private var suspicionsOnHold = false
    /// Members whose current record still has to be gossiped, with how often it was sent.
    private var gossipSent: [NodeID: Int] = [:]

    public init(
        myself: Member, seeds: [NodeAddress], settings: MembershipSettings = .init(), now: Timestamp, seed: UInt64
    ) {
        self.settings = settings
        self.myself = myself
        self.seeds = seeds.filter { $0 != myself.address }
        self.unansweredSeeds = Set(self.seeds)
        self.random = SeededRandom(seed: seed)
        self.nextProbeAt = now
        self.nextSyncAt = now
        gossipSent[myself.id] = 0
    }

    // MARK: - Views

    /// Every member this node knows, itself included, in id order.
    public var members: [Member] {
        ([myself] + records.values.map(\.member)).sorted { $0.id < $1.id }
    }

    public func member(_ id: NodeID) -> Member? {
        id == myself.id ? myself : records[id]?.member
    }

    /// The latest time `tick` must be called (a probe, timeout, suspicion or sync falls due).
    public var nextDeadline: Timestamp {
        var deadline = min(nextProbeAt, nextSyncAt)
        if let probe, !probe.indirectSent, !probe.acked { deadline = min(deadline, probe.indirectAt) }
        // Without a majority suspicions do not expire, so their deadlines wait too.
        if seesMajority {
            for record in records.values {
                if let expiry = suspicionExpiry(record) { deadline = min(deadline, expiry) }
            }
        }
        return deadline
    }

    /// Whether this node reaches a majority of the cluster: itself and the members it sees `alive`
    /// (not merely suspect) are more than half of every member it knows that has not left.
    ///
    /// Why: a node cut off from the rest must neither bury the others nor take their work. Without
    /// a majority it declares nobody dead (suspicions wait; a heal turns them into refutations
    /// instead of deaths that would spread to the majority) and its shell takes no shards and
    /// releases those it holds (Akka's "keep majority"). Members that left gracefully no longer
    /// count, so a planned scale-down keeps the quorum; dead members still do, since a partition
    /// and a crash look the same from inside.
    /// A node that has heard from nobody yet counts its seeds as the cluster, so a restarted node
    /// takes nothing before it has joined (a node without other seeds is a cluster of one).
    ///
    /// Lifeguard's local health counts too: a node whose own last probes all went unanswered is
    /// more likely cut off itself than surrounded by failures, so it counts as reaching no
    /// majority however many members it still lists as alive (in a large cluster a cut-off node
    /// suspects one member per probe period and would list most as alive for a long time).
    public var seesMajority: Bool {
        guard failedProbesInARow < Self.unhealthyAfterFailedProbes else { return false }
        let known = records.isEmpty ? 1 + seeds.count : 1 + records.values.count { $0.member.status != .left }
        let reached = 1 + records.values.count { $0.member.status == .alive }
        return reached * 2 > known
    }

    /// Whether this node may keep and take shards: as `seesMajority`, except that a member that is
    /// only suspected still counts as reached. A suspicion is often stale — after a heal the node
    /// that was cut off gossips the suspicions it raised while it still thought itself healthy, and
    /// they are refuted within a probe period — and dropping every shard on it would cost each of
    /// them an epoch and each auction a reload (measured: a third epoch change of a shard in about
    /// one partition round in seven). A death, or this node's own failed probes (local health),
    /// still takes the shards away at once.
    public var holdsShards: Bool {
        guard failedProbesInARow < Self.unhealthyAfterFailedProbes else { return false }
        let known = records.isEmpty ? 1 + seeds.count : 1 + records.values.count { $0.member.status != .left }
        let reached = 1 + records.values.count { $0.member.status.isLive }
        return reached * 2 > known
    }

    /// Probes in a row without an answer (direct or indirect), while this node did not hear from a
    /// majority (`heardFromMajority`), after which it doubts itself.
    static let unhealthyAfterFailedProbes = 3
    private var failedProbesInARow = 0
    /// When each other member was last heard from (any message it sent).
    private var lastHeard: [NodeID: Timestamp] = [:]

    /// Whether this node heard, within the last three (stretched) probe periods, from enough
    /// members to form a majority with itself: then the network reaches it, and unanswered probes
    /// mean slow targets, not that this node is cut off. A minority that still hears itself (two
    /// nodes of five) does not count as a majority.
    private func heardFromMajority(now: Timestamp) -> Bool {
        let horizon = now.advanced(by: .zero - probeInterval * 3)
        let heard = records.count { id, record in
            record.member.status != .left && (lastHeard[id].map { $0 >= horizon } ?? false)
        }
        let known = 1 + records.values.count { $0.member.status != .left }
        return (1 + heard) * 2 > known
    }

    /// Lifeguard's local health multiplier (0 = healthy, up to `settings.maximumLocalHealth`): how
    /// much this node doubts its own timeliness. It rises when this node runs late (a tick long
    /// after its deadline: the process was starved, paused or descheduled) and when it has to
    /// refute a suspicion of itself; it falls with every probe answered in time. The probe
    /// interval and the ping timeout stretch by `1 + localHealth`.
    ///
    /// Why: a node that runs late sees every answer late and would suspect healthy members — and
    /// drop its shards for its own failed probes — while it is the slow one. Stretching its own
    /// timeouts makes a starved node a patient prober instead of a source of false suspicions.
    /// Unlike Lifeguard, an unanswered probe alone does not raise it: this node measures its own
    /// lateness directly, and a node cut off from the majority (and running on time) must keep
    /// probing at full pace so that it gives up its shards within about a second (`holdsShards`).
    public private(set) var localHealth = 0
    /// The deadline `tick` was due at, as of the last input: how late a tick is measures how far
    /// behind this node runs.
    private var dueAt: Timestamp?

    private var probeInterval: Duration { settings.probeInterval * (1 + localHealth) }
    private var pingTimeout: Duration { settings.pingTimeout * (1 + localHealth) }

    private mutating func adjustHealth(by change: Int) {
        localHealth = min(settings.maximumLocalHealth, max(0, localHealth + change))
    }

    /// A tick more than a ping timeout after its deadline means this node did not run: what it
    /// missed meanwhile (acks, refutations) may be waiting in its inbox. So the stall is not held
    /// against others — the open probe and every suspicion get the time back — and counts
    /// against this node's own health.
    private mutating func absorbStall(now: Timestamp) {
        guard let due = dueAt, now > due.advanced(by: settings.pingTimeout) else { return }
        adjustHealth(by: 1)
        if var open = probe, !open.acked, !open.extended {
            open.indirectAt = max(open.indirectAt, now.advanced(by: pingTimeout))
            open.indirectSent = false
            open.extended = true
            probe = open
            nextProbeAt = max(nextProbeAt, now.advanced(by: probeInterval))
        }
        for (id, record) in records {
            // The time this node did not run since the suspicion began (it may have begun during
            // the stall, from a message handled late).
            if let since = record.suspectedSince {
                records[id]?.suspectedSince = since.advanced(by: max(since, due).duration(to: now))
            }
        }
    }

    private var liveOthers: [Member] {
        records.values.map(\.member).filter(\.status.isLive).sorted { $0.id < $1.id }
    }

    // MARK: - Inputs

    /// Advances timers: probes, indirect probes, suspicion expiry, push-pull.
    public mutating func tick(now: Timestamp) -> [MembershipDirective] {
        guard myself.status == .alive else { return [] }
        absorbStall(now: now)
        defer { dueAt = max(nextDeadline, now) }
        var out: [MembershipDirective] = []
        expireSuspicions(now: now, into: &out)
        relays = relays.filter { $0.value.expiresAt > now }

        if var current = probe, !current.acked, !current.indirectSent, now >= current.indirectAt {
            current.indirectSent = true
            probe = current
            if let target = records[current.target]?.member {
                let helpers = liveOthers.filter { $0.id != target.id }.shuffled(using: &random).prefix(
                    settings.indirectProbes)
                for helper in helpers {
                    out.append(send(.pingRequest(sequence: current.sequence, target: target), to: helper.address))
                }
            }
        }

        if now >= nextProbeAt {
            if let finished = probe, !finished.acked {
                // Only not hearing a majority makes this node doubt itself: late acks and pings
                // from most members show the network reaches it — the target is slow, not this
                // node cut off.
                failedProbesInARow = heardFromMajority(now: now) ? 0 : failedProbesInARow + 1
                // A node that doubts itself (or reaches no majority) raises no suspicion either:
                // after a heal it would spread to nodes that never lost sight of the suspect.
                if seesMajority, let record = records[finished.target], record.member.status == .alive {
                    merge(record.member.with(status: .suspect, suspectedBy: myself.id), now: now, into: &out)
                }
            }
            probe = nil
            if let target = nextProbeTarget() {
                sequence += 1
                probe = Probe(target: target.id, sequence: sequence, indirectAt: now.advanced(by: pingTimeout))
                out.append(send(.ping(sequence: sequence), to: target.address))
            }
            nextProbeAt = now.advanced(by: probeInterval)
        }

        if now >= nextSyncAt {
            let live = liveOthers
            unansweredSeeds.subtract(live.map(\.address))
            let elsewhere = Set(seeds + records.values.map(\.member).filter { !$0.status.isLive }.map(\.address))
                .subtracting(live.map(\.address)).sorted()
            if live.isEmpty {
                // Alone: knock on every seed and every buried member each probe interval.
                for address in elsewhere { out.append(send(.sync(fullState), to: address)) }
            } else {
                for seed in unansweredSeeds.sorted() { out.append(send(.sync(fullState), to: seed)) }
                if let peer = live.randomElement(using: &random) {
                    out.append(send(.sync(fullState), to: peer.address))
                }
                // And one address from the other side of a possible partition.
                if let other = elsewhere.filter({ !unansweredSeeds.contains($0) }).randomElement(using: &random) {
                    out.append(send(.sync(fullState), to: other))
                }
            }
            let hurry = live.isEmpty || !unansweredSeeds.isEmpty
            nextSyncAt = now.advanced(by: hurry ? settings.probeInterval : settings.syncInterval)
        }
        return out
    }

    /// Handles one message that arrived from `address`.
    public mutating func receive(_ message: MembershipMessage, from address: NodeAddress, now: Timestamp)
        -> [MembershipDirective]
    {
        guard myself.status == .alive, message.sender.id != myself.id else { return [] }
        // A message moves the deadline (an ack cancels the indirect probe; a suspicion brings its
        // expiry): the tick is due at the new one — unless it is overdue already, which the next
        // tick must still see as lateness.
        defer { if dueAt.map({ now <= $0 }) ?? true { dueAt = max(nextDeadline, now) } }
        var out: [MembershipDirective] = []
        lastHeard[message.sender.id] = now
        let senderKnownFinished =
            records[message.sender.id].map {
                $0.member.generation == message.sender.generation && !$0.member.status.isLive
            } ?? false
        merge(message.sender, now: now, into: &out)
        for update in message.gossip {
            merge(update, now: now, into: &out)
        }
        switch message.kind {
        case .ping(let sequence):
            out.append(send(.ack(sequence: sequence), to: address))
            // A node we buried is still talking: tell it, so it rejoins under a new generation.
            if senderKnownFinished { out.append(send(.syncReply(fullState), to: address)) }
        case .ack(let sequence):
            if var current = probe, current.sequence == sequence {
                current.acked = true
                probe = current
                failedProbesInARow = 0
                adjustHealth(by: -1)
            } else if let relay = relays.removeValue(forKey: sequence) {
                out.append(send(.ack(sequence: relay.originSequence), to: relay.origin))
            }
        case .pingRequest(let originSequence, let target):
            merge(target, now: now, into: &out)
            sequence += 1
            relays[sequence] = Relay(
                origin: address, originSequence: originSequence,
                expiresAt: now.advanced(by: settings.probeInterval * 2))
            out.append(send(.ping(sequence: sequence), to: target.address))
        case .sync(let state):
            for update in state { merge(update, now: now, into: &out) }
            out.append(send(.syncReply(fullState), to: address))
        case .syncReply(let state):
            for update in state { merge(update, now: now, into: &out) }
        case .alive, .leave:
            break
        }
        return out
    }

    /// Leaves the cluster gracefully: tells every live member, then stays silent.
    public mutating func leave(now: Timestamp) -> [MembershipDirective] {
        guard myself.status == .alive else { return [] }
        let previous = myself
        myself.status = .left
        var out: [MembershipDirective] = [.changed(from: previous, to: myself)]
        for member in liveOthers {
            out.append(.send(MembershipMessage(sender: myself, kind: .leave), to: member.address))
        }
        return out
    }

    // MARK: - Merging records

    /// The largest incarnation taken from a peer: a member raises its own by one per refutation, so
    /// no real one gets near this.
    public static let maximumIncarnation: UInt64 = 1 << 32
    /// How far ahead of this node's clock a generation (a process's start time in milliseconds)
    /// may be: clock skew, not more.
    public static let maximumGenerationLead: Duration = .seconds(86_400)

    /// Whether a record could be true: a generation far in the future or an absurd incarnation would
    /// win over every real record of that member for good (one such frame evicted a node until
    /// the whole cluster restarted), so it is ignored.
    public static func isPlausible(_ member: Member, now: Timestamp) -> Bool {
        let latest = now.advanced(by: maximumGenerationLead).millisecondsSinceEpoch
        return member.incarnation <= maximumIncarnation && member.generation <= UInt64(max(1, latest))
    }

    private mutating func merge(_ update: Member, now: Timestamp, into out: inout [MembershipDirective]) {
        guard Self.isPlausible(update, now: now) else { return }
        if update.id == myself.id {
            answerClaimAboutMyself(update, now: now, into: &out)
            return
        }
        guard let current = records[update.id] else {
            guard records.count < settings.maximumMembers else { return }
            records[update.id] = Record(member: update, suspectedSince: update.status == .suspect ? now : nil)
            gossipSent[update.id] = 0
            if update.status.isLive {
                probeOrder.insert(update.id, at: Int.random(in: 0...probeOrder.count, using: &random))
            }
            out.append(.changed(from: nil, to: update))
            return
        }
        if update.supersedes(current.member) {
            var record = Record(member: update)
            if update.status == .suspect {
                record.suspectedSince = now
                if let suspecter = update.suspectedBy, suspecter != update.id, suspecter != myself.id {
                    record.confirmations = [suspecter]
                }
            }
            records[update.id] = record
            gossipSent[update.id] = 0
            if update.status.isLive, !current.member.status.isLive || current.member.generation != update.generation {
                probeOrder.insert(update.id, at: Int.random(in: 0...probeOrder.count, using: &random))
            }
            out.append(.changed(from: current.member, to: update))
        } else if update.status == .suspect, current.member.status == .suspect,
            update.generation == current.member.generation, update.incarnation == current.member.incarnation,
            let suspecter = update.suspectedBy, suspecter != update.id, suspecter != myself.id
        {
            // Another node suspects it too: an independent confirmation shortens the timeout.
            records[update.id]?.confirmations.insert(suspecter)
        }
    }

    private mutating func answerClaimAboutMyself(_ claim: Member, now: Timestamp, into out: inout [MembershipDirective])
    {
        guard claim.generation == myself.generation else { return }
        let previous = myself
        switch claim.status {
        case .suspect where claim.incarnation >= myself.incarnation:
            myself.incarnation = claim.incarnation + 1
            adjustHealth(by: 1)
        case .dead, .left:
            // Declared dead: come back as a new generation, which supersedes every old record.
            myself.generation = max(myself.generation + 1, UInt64(max(0, now.millisecondsSinceEpoch)))
            myself.incarnation = 0
        default:
            return
        }
        gossipSent[myself.id] = 0
        out.append(.changed(from: previous, to: myself))
        // Refute at once to everyone, not only on the next probes: a suspicion times out fast.
        for member in liveOthers {
            out.append(.send(MembershipMessage(sender: myself, kind: .alive), to: member.address))
        }
    }

    private mutating func expireSuspicions(now: Timestamp, into out: inout [MembershipDirective]) {
        // No death verdicts from a node that does not reach a majority (see `seesMajority`); when
        // it reaches one again, its suspicions start over: those members get a full suspicion
        // period to refute now that they can be heard (refutation before burial).
        guard seesMajority else {
            suspicionsOnHold = true
            return
        }
        if suspicionsOnHold {
            // Suspicions raised before this node lost its majority are withdrawn here (they were
            // most likely its own isolation); a member that really failed meanwhile is buried by
            // the majority, which kept watching it.
            suspicionsOnHold = false
            for (id, record) in records where record.member.status == .suspect {
                records[id] = Record(member: record.member.with(status: .alive))
            }
            return
        }
        for (id, record) in records {
            guard let expiry = suspicionExpiry(record), expiry <= now else { continue }
            var dead = record.member
            dead.status = .dead
            records[id] = Record(member: dead)
            gossipSent[id] = 0
            out.append(.changed(from: record.member, to: dead))
        }
    }

    /// Lifeguard: max − (max − min) · log(C + 1) / log(K + 1), never below min, where C is the number
    /// of independent confirmations and K the number that brings the timeout to its minimum.
    private func suspicionExpiry(_ record: Record) -> Timestamp? {
        guard record.member.status == .suspect, let since = record.suspectedSince else { return nil }
        let expected = max(1, min(settings.suspicionConfirmations, liveOthers.count - 1))
        let confirmations = min(record.confirmations.count, expected)
        let maximum = Double(settings.suspicionMaximum.wholeMilliseconds)
        let minimum = Double(settings.suspicionMinimum.wholeMilliseconds)
        let fraction = log2(Double(confirmations + 1)) / log2(Double(expected + 1))
        let timeout = max(minimum, maximum - (maximum - minimum) * fraction)
        return since.advanced(by: .milliseconds(Int64(timeout)))
    }

    // MARK: - Choosing peers and gossip

    private mutating func nextProbeTarget() -> Member? {
        while true {
            if probeOrder.isEmpty {
                probeOrder = liveOthers.map(\.id).shuffled(using: &random)
                if probeOrder.isEmpty { return nil }
            }
            let id = probeOrder.removeFirst()
            if let member = records[id]?.member, member.status.isLive { return member }
        }
    }

    private var fullState: [Member] {
        Array(members.prefix(settings.maximumMembers))
    }

    private mutating func send(_ kind: MembershipMessage.Kind, to address: NodeAddress) -> MembershipDirective {
        .send(MembershipMessage(sender: myself, kind: kind, gossip: nextGossip()), to: address)
    }

    private mutating func nextGossip() -> [Member] {
        guard !gossipSent.isEmpty else { return [] }
        let limit = settings.gossipRetransmitMultiplier * max(1, Int(log2(Double(records.count + 2)).rounded(.up)))
        let chosen = gossipSent.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(settings.gossipPerMessage)
        var result: [Member] = []
        for (id, count) in chosen {
            if let member = member(id) { result.append(member) }
            if count + 1 >= limit { gossipSent[id] = nil } else { gossipSent[id] = count + 1 }
        }
        return result
    }
}
