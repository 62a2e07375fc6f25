import BatonCore
import Glibc

/// Users and groups by name (getpwnam_r / getgrnam_r / getgrouplist).
public enum Accounts {
    /// Resolves `user` (and optional `group`, else the user's primary group)
    /// to credentials with the user's supplementary groups.
    public static func credentials(user: String, group: String?) throws(SpawnError) -> Credentials {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwnam_r(user, &pw, &buffer, buffer.count, &result) == 0, result != nil else {
            // A numeric uid, as systemd's User= takes one (a re-audit: `unknown user "999"`):
            // its passwd entry if it has one, else that uid with its number as group.
            guard isDecimal(user), let uid = uid_t(user) else { throw SpawnError(step: "unknown user \"\(user)\"", errno: 0) }
            try checkNumericID(uid, user)
            if let entry = entry(uid: uid) { return try credentials(user: entry.name, group: group) }
            let gid = try group.map { name throws(SpawnError) in try groupID(name) } ?? uid
            return Credentials(uid: uid, gid: gid, groups: [gid])
        }
        try checkResolvedID(pw.pw_uid, "user \"\(user)\" has uid")
        var gid = pw.pw_gid
        if let group { gid = try groupID(group) } else { try checkResolvedID(gid, "user \"\(user)\"'s primary group has gid") }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(user, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(user, gid, &groups, &count)
        }
        return Credentials(uid: pw.pw_uid, gid: gid, groups: Array(groups.prefix(Int(max(count, 0)))), account: account(of: pw))
    }

    /// Digits only: Swift's integer parsing takes `+0` and `-0` for 0 (a re-audit: `user =
    /// "+0"` ran workers as root).
    static func isDecimal(_ text: String) -> Bool { !text.isEmpty && text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }

    /// Refuses the ids that are no user or group: 4294967295 is (uid_t)-1, which setresuid,
    /// setresgid and chown take as "leave it unchanged" (a re-audit: `socket_group =
    /// "4294967295"` left the socket root's; a worker of `user = "4294967295"` would have kept
    /// baton's uid), and 65535 its 16-bit form; systemd refuses both.
    static func checkNumericID(_ id: UInt32, _ text: String) throws(SpawnError) {
        guard id == UInt32.max || id == 65535 else { return }
        throw SpawnError(step: "\"\(text)\" is not a valid uid or gid (4294967295 and 65535 mean \"none\")", errno: 0)
    }

    /// The same for an id a name resolved to (a re-audit: a passwd entry of uid 4294967295
    /// passed check-config, then every start failed; a group of gid 65535 was set on the socket).
    static func checkResolvedID(_ id: UInt32, _ what: String) throws(SpawnError) {
        guard id == UInt32.max || id == 65535 else { return }
        throw SpawnError(step: "\(what) \(id), which means \"none\" to setresuid, setresgid and chown", errno: 0)
    }

    /// What workers of `[app] user` and `group` run as: the user's credentials, or baton's own
    /// uid with `group` and no supplementary group; nil when neither is set.
    public static func workerCredentials(user: String?, group: String?) throws(SpawnError) -> Credentials? {
        if let user { return try credentials(user: user, group: group) }
        guard let group else { return nil }
        return Credentials(uid: getuid(), gid: try groupID(group), groups: [])
    }

    /// HOME, USER, LOGNAME and SHELL of `uid`'s passwd entry (none without one).
    public static func account(uid: uid_t) -> [EnvVar] { entry(uid: uid)?.account ?? [] }

    /// The name and account variables of `uid`'s passwd entry, nil without one.
    private static func entry(uid: uid_t) -> (name: String, account: [EnvVar])? {
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getpwuid_r(uid, &pw, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return (String(cString: pw.pw_name), account(of: pw))
    }

    /// HOME, USER, LOGNAME and SHELL (when set) of a passwd entry, as systemd's `User=` gives them.
    private static func account(of pw: passwd) -> [EnvVar] {
        let name = String(cString: pw.pw_name)
        var account = [EnvVar(name: "HOME", value: String(cString: pw.pw_dir)), EnvVar(name: "USER", value: name), EnvVar(name: "LOGNAME", value: name)]
        if let shell = pw.pw_shell, shell.pointee != 0 { account.append(EnvVar(name: "SHELL", value: String(cString: shell))) }
        return account
    }

    /// A group id by name (or a numeric string).
    public static func groupID(_ name: String) throws(SpawnError) -> gid_t {
        if isDecimal(name), let numeric = UInt32(name) {
            try checkNumericID(numeric, name)
            return numeric
        }
        var gr = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &gr, &buffer, buffer.count, &result) == 0, result != nil else {
            throw SpawnError(step: "unknown group \"\(name)\"", errno: 0)
        }
        try checkResolvedID(gr.gr_gid, "group \"\(name)\" has gid")
        return gr.gr_gid
    }
}
