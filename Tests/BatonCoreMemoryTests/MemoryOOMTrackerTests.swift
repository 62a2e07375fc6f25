import BatonCore
import Testing

@Suite("OOM kills: kernel log records and attribution")
struct MemoryOOMTrackerTests {
    @Test func parsesTheKernelRecord() {
        let record =
            "3,445,9260379118,-;Memory cgroup out of memory: Killed process 28880 (python3) total-vm:221368kB, anon-rss:65152kB, file-rss:4792kB"
        #expect(OOMKillMessage.parse(record) == OOMKillMessage(pid: 28880, comm: "python3"))
        #expect(OOMKillMessage.parse("Out of memory: Killed process 7 (gunicorn: work) total-vm:1kB") == OOMKillMessage(pid: 7, comm: "gunicorn: work"))
        #expect(OOMKillMessage.parse("oom-kill:constraint=CONSTRAINT_MEMCG,task=python3,pid=28880,uid=0") == nil)
        #expect(OOMKillMessage.parse("Killed process x (y)") == nil)
    }

    @Test func theFirstReadingIsTheBaselineAndACounterResetRestartsIt() {
        var t = OOMTracker()
        #expect(t.observe(counter: 5) == 0)
        #expect(t.observe(counter: 7) == 2)
        #expect(t.observe(counter: 7) == 0)
        #expect(t.observe(counter: 1) == 0)
        #expect(t.observe(counter: 2) == 1)
    }

    /// A `baton upgrade` hands the counts over: `baton_oom_kills_total` never decreases.
    @Test func countsCarriedFromAnEarlierImageAddUp() {
        var t = OOMTracker()
        t.carry(total: 3, bySlot: [0: 2, 1: 1])
        t.carry(total: 1, bySlot: [1: 1])
        #expect(t.total == 4 && t.bySlot == [0: 2, 1: 2])
        #expect(t.observe(counter: 9) == 0, "the new image's first reading is its baseline")
    }

    @Test func aGrandchildNamedByTheKernelLogIsCountedOnItsSlot() {
        var t = OOMTracker()
        let e = OOMTracker.Evidence(
            messages: [OOMKillMessage(pid: 303, comm: "perl")], trees: [100: 0, 200: 1, 201: 1, 303: 1], tops: [100: 0, 200: 1])
        let kills = t.record(count: 1, evidence: e, now: .seconds(10), wall: 1000)
        #expect(kills == [OOMKill(pid: 303, comm: "perl", slot: 1, topProcess: false, at: 1000)])
        #expect(t.bySlot == [1: 1])
        #expect(t.total == 1)
        #expect(t.killed(pid: 303))
    }

    @Test func aTopProcessKilledIsMarkedAsSuchEvenWithoutAKernelLog() {
        var t = OOMTracker()
        let e = OOMTracker.Evidence(trees: [100: 0, 200: 1], tops: [100: 0, 200: 1], sigkilledTops: [200: 1])
        let kills = t.record(count: 1, evidence: e, now: .seconds(10), wall: 1000)
        #expect(kills.map(\.slot) == [1])
        #expect(kills.first?.topProcess == true)
        #expect(kills.first?.pid == 200)
    }

    @Test func neverMoreKillsThanTheCounterSaysAndForeignVictimsStayUnattributed() {
        var t = OOMTracker()
        // Two records (another cgroup's kill is in the host's log too), one kill in ours.
        let e = OOMTracker.Evidence(
            messages: [OOMKillMessage(pid: 9999, comm: "other"), OOMKillMessage(pid: 201, comm: "worker")], trees: [200: 1, 201: 1],
            tops: [200: 1])
        #expect(t.record(count: 1, evidence: e, now: .seconds(1), wall: 1).map(\.pid) == [201])
        // A kill nobody can name is still counted, outside every slot.
        let unnamed = t.record(count: 1, evidence: OOMTracker.Evidence(), now: .seconds(2), wall: 2)
        #expect(unnamed == [OOMKill(pid: nil, comm: nil, slot: nil, at: 2)])
        #expect(t.total == 2)
        #expect(t.bySlot == [1: 1])
    }

    @Test func withoutAKernelLogTheOneVanishedDescendantIsTheVictim() {
        var t = OOMTracker()
        let kills = t.record(count: 1, evidence: OOMTracker.Evidence(vanished: [201: 1]), now: .seconds(1), wall: 1)
        #expect(kills.map(\.slot) == [1])
        // Two vanished: no guess.
        let two = t.record(count: 1, evidence: OOMTracker.Evidence(vanished: [201: 1, 301: 2]), now: .seconds(2), wall: 2)
        #expect(two.map(\.slot) == [nil])
    }

    @Test func plansKeepAMarginForAWhileAfterAKill() {
        var t = OOMTracker(marginWindow: .seconds(3600))
        #expect(t.marginBytes(now: .seconds(5), footprint: 80 << 20) == 0)
        _ = t.record(count: 1, evidence: OOMTracker.Evidence(), now: .seconds(10), wall: 1)
        #expect(t.marginBytes(now: .seconds(20), footprint: 80 << 20) == 80 << 20)
        #expect(t.marginBytes(now: .seconds(20), footprint: nil) == OOMTracker.defaultMargin)
        #expect(t.marginBytes(now: .seconds(3611), footprint: 80 << 20) == 0)
    }
}
