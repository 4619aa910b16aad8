import Testing

@testable import Node

/// The settlement driver's wake-up. The waits here are ten minutes long: a test can only finish in
/// time if a ring (or a cancellation) is what ends them. (The limit leaves room for a suite that
/// starves the cooperative pool: process tests block threads while their nodes stop.)
@Suite struct DoorbellTests {
    @Test(.timeLimit(.minutes(3))) func aRing_endsTheWait_whetherItComesBeforeOrDuringIt() async {
        let doorbell = Doorbell()
        doorbell.ring()
        await doorbell.wait(upTo: .seconds(600))
        for _ in 0..<10 {
            let waiting = Task { await doorbell.wait(upTo: .seconds(600)) }
            doorbell.ring()
            await waiting.value
        }
    }

    @Test(.timeLimit(.minutes(3))) func cancelling_endsTheWait() async {
        let doorbell = Doorbell()
        let waiting = Task { await doorbell.wait(upTo: .seconds(600)) }
        waiting.cancel()
        await waiting.value
    }
}
