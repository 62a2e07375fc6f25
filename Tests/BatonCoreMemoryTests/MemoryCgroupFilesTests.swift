import BatonCore
import Testing

@Suite("Cgroup files")
struct MemoryCgroupFilesTests {
    @Test func cgroupMembershipOnTheHybridBuildMachine() throws {
        let member = try CgroupMembership.parse(MemoryFixtures.realSelfCgroup)
        #expect(member.unifiedPath == "/")
        #expect(member.v1MemoryPath == "/process_api/975b40bdef79487d563803acf782847c")
        // A v1 memory line wins: the controller cannot be in both hierarchies.
        #expect(member.memoryVersion == .v1)
    }

    @Test func cgroupMembershipOnPureV2AndV1() throws {
        let v2 = try CgroupMembership.parse(MemoryFixtures.v2SelfCgroup)
        #expect(v2 == CgroupMembership(unifiedPath: "/system.slice/baton@shop.service", v1MemoryPath: nil))
        #expect(v2.memoryVersion == .v2)
        let v1 = try CgroupMembership.parse("5:cpu,cpuacct:/a\n4:memory:/docker/abc:def\n1:name=systemd:/x\n")
        #expect(v1.v1MemoryPath == "/docker/abc:def")  // only the first two colons separate
        #expect(v1.unifiedPath == nil)
        #expect(try CgroupMembership.parse("7:blkio,memory:/m\n").v1MemoryPath == "/m")
        #expect(throws: MemoryParseError.self) { try CgroupMembership.parse("3:cpu:/\n") }
        #expect(throws: MemoryParseError.self) { try CgroupMembership.parse("garbage\n") }
    }

    @Test func mountinfoOfTheHybridBuildMachine() {
        let mounts = CgroupMount.parseMountInfo(MemoryFixtures.realMountinfo)
        #expect(
            mounts == [
                CgroupMount(version: .v1, root: "/", mountPoint: "/sys/fs/cgroup/memory"),
                CgroupMount(version: .v2, root: "/", mountPoint: "/sys/fs/cgroup/unified"),
            ])
        let path = "/process_api/975b40bdef79487d563803acf782847c"
        let mount = CgroupMount.mount(for: path, version: .v1, in: mounts)
        #expect(mount?.directory(of: path) == "/sys/fs/cgroup/memory" + path)
        #expect(mount?.directory(of: "/") == "/sys/fs/cgroup/memory")
    }

    @Test func mountinfoOfAPureV2Host() {
        let mounts = CgroupMount.parseMountInfo(MemoryFixtures.v2Mountinfo)
        #expect(mounts == [CgroupMount(version: .v2, root: "/", mountPoint: "/sys/fs/cgroup")])
        #expect(mounts[0].directory(of: "/system.slice/a.service") == "/sys/fs/cgroup/system.slice/a.service")
    }

    @Test func mountinfoEscapesBindMountsAndNamespaces() {
        let text = """
            50 40 0:30 /docker/abc /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory
            51 40 0:31 / /mnt/my\\040cgroups\\134\\011x\\ rw - cgroup2 cgroup2 rw
            52 40 0:31 /system.slice /srv/slice rw shared:3 master:1 - cgroup2 cgroup2 rw
            53 40 0:32 / /x rw - cgroup cgroup rw,cpu

            """
        let mounts = CgroupMount.parseMountInfo(text)
        #expect(mounts.count == 3)
        #expect(mounts[1].mountPoint == "/mnt/my cgroups\\\tx\\")
        // A v1 mount of /docker/abc shows that cgroup at its mount point, and nothing outside it.
        #expect(mounts[0].directory(of: "/docker/abc") == "/sys/fs/cgroup/memory")
        #expect(mounts[0].directory(of: "/docker/abc/w") == "/sys/fs/cgroup/memory/w")
        #expect(mounts[0].directory(of: "/docker/abcd") == nil)
        #expect(mounts[0].directory(of: "/") == nil)
        // Two v2 mounts show the service: the one rooted deeper is picked.
        let picked = CgroupMount.mount(for: "/system.slice/a.service", version: .v2, in: mounts)
        #expect(picked?.directory(of: "/system.slice/a.service") == "/srv/slice/a.service")
        #expect(CgroupMount.mount(for: "/user.slice", version: .v2, in: mounts)?.mountPoint == "/mnt/my cgroups\\\tx\\")
    }

    @Test func limitValues() throws {
        #expect(try CgroupFiles.limit("max\n") == nil)
        #expect(try CgroupFiles.limit(MemoryFixtures.realV1Unlimited) == nil)
        #expect(try CgroupFiles.limit("\(UInt64(1) << 62)\n") == nil)
        #expect(try CgroupFiles.limit("\((UInt64(1) << 62) - 1)\n") == (1 << 62) - 1)
        #expect(try CgroupFiles.limit("536870912\n") == 512 << 20)
        #expect(try CgroupFiles.limit("0\n") == 0)
        #expect(throws: MemoryParseError.self) { try CgroupFiles.limit("") }
        #expect(throws: MemoryParseError.self) { try CgroupFiles.limit("-1") }
        #expect(throws: MemoryParseError.self) { try CgroupFiles.bytes("max") }
    }

    @Test func v1LeafOfTheBuildMachine() throws {
        let unlimited = MemoryFixtures.realV1Unlimited
        let cgroup = try CgroupMemory.v1(
            path: "/process_api/975b40bdef79487d563803acf782847c", usage: MemoryFixtures.realV1LeafUsage,
            stat: MemoryFixtures.realV1LeafStat,
            limitsUpward: [
                ("/process_api/975b40bdef79487d563803acf782847c", unlimited), ("/process_api", unlimited),
                ("/", unlimited),
            ])
        #expect(cgroup.version == .v1)
        #expect(cgroup.limit == nil && cgroup.limitPath == nil && cgroup.high == nil)
        #expect(cgroup.usage == 118_464_512)
        // total_inactive_file + total_active_file − total_mapped_file
        #expect(cgroup.reclaimable == 54_878_208 + 50_733_056 - 16_384)
        #expect(cgroup.workingSet == 118_464_512 - (54_878_208 + 50_733_056 - 16_384))
        // The parent's stat parses too (its own counters are zero, the total_ ones are not).
        let parent = try CgroupMemory.v1(
            path: "/process_api", usage: "1756577792\n", stat: MemoryFixtures.realV1ParentStat)
        #expect(parent.limit == nil && parent.reclaimable > 0 && parent.reclaimable <= parent.usage)
    }

    @Test func v1ChildWhoseLimitComesFromItsParent() throws {
        let cgroup = try CgroupMemory.v1(
            path: "/shop/workers", usage: "251658240\n", stat: MemoryFixtures.v1ChildStat,
            limitsUpward: [
                ("/shop/workers", MemoryFixtures.realV1Unlimited), ("/shop", "536870912\n"),
                ("/", MemoryFixtures.realV1Unlimited),
            ])
        #expect(cgroup.limit == 512 << 20)
        #expect(cgroup.limitPath == "/shop")
        #expect(cgroup.reclaimable == 25_165_824 + 16_777_216 - 8_388_608)
        #expect(cgroup.workingSet == 251_658_240 - cgroup.reclaimable)
        #expect(throws: MemoryParseError("memory.stat has no \"hierarchical_memory_limit\"")) {
            try CgroupMemory.v1(path: "/", usage: "1\n", stat: "cache 0\n")
        }
    }

    @Test func v2NestedLimitsTakeTheSmallest() throws {
        let cgroup = try CgroupMemory.v2(
            path: "/system.slice/baton@shop.service", current: MemoryFixtures.v2ServiceCurrent,
            stat: MemoryFixtures.v2ServiceStat,
            levels: [
                .init(path: "/system.slice/baton@shop.service", max: "2147483648\n", high: "943718400\n"),
                .init(path: "/system.slice", max: "1073741824\n", high: "max\n"),
                .init(path: "/", max: nil, high: nil),
            ])
        #expect(cgroup.version == .v2)
        #expect(cgroup.limit == 1 << 30)
        #expect(cgroup.limitPath == "/system.slice")
        #expect(cgroup.high == 900 << 20)
        #expect(cgroup.usage == 473_690_112)
        #expect(cgroup.reclaimable == 209_715_200 + 109_051_904 - 52_428_800)
        #expect(cgroup.workingSet == 473_690_112 - 266_338_304)
    }

    @Test func v2AllMaxMeansUnlimited() throws {
        let cgroup = try CgroupMemory.v2(
            path: "/a/b", current: "4096\n", stat: "inactive_file 1048576\nactive_file 0\nfile_mapped 0\n",
            levels: [.init(path: "/a/b", max: "max\n", high: "max\n"), .init(path: "/a", max: "max\n", high: nil)])
        #expect(cgroup.limit == nil && cgroup.limitPath == nil && cgroup.high == nil)
        // Reclaimable never exceeds what is charged.
        #expect(cgroup.reclaimable == 4096 && cgroup.workingSet == 0)
        #expect(throws: MemoryParseError.self) {
            try CgroupMemory.v2(path: "/a", current: "x", stat: "", levels: [])
        }
    }

    @Test func ancestors() {
        #expect(CgroupMemory.ancestors(of: "/a/b/c") == ["/a/b", "/a", "/"])
        #expect(CgroupMemory.ancestors(of: "/a") == ["/"])
        #expect(CgroupMemory.ancestors(of: "/") == [])
    }
}
