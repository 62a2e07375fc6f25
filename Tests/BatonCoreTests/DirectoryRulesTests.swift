import Testing

@testable import BatonCore

/// The rules for the state, runtime and releases directories, through `BatonConfig.parse` (the
/// one-line error with its key and line) and directly.
@Suite("directory rules")
struct DirectoryRulesTests {
    /// `minimalApp` (app.directory = /srv/shop/current, config in /etc/baton) plus `lines` in [app].
    func appWith(_ lines: String) -> String { minimalApp + lines + "\n" }

    @Test("normalize: repeated and trailing slashes, . and .. are resolved lexically, never above /")
    func normalize() {
        #expect(DirectoryRules.normalize("/") == "/")
        #expect(DirectoryRules.normalize("//") == "/")
        #expect(DirectoryRules.normalize("/usr/") == "/usr")
        #expect(DirectoryRules.normalize("/srv//shop/./state/") == "/srv/shop/state")
        #expect(DirectoryRules.normalize("/srv/shop/../..") == "/")
        #expect(DirectoryRules.normalize("/../../var/lib/") == "/var/lib")
        #expect(DirectoryRules.isWithin("/srv/shop/state", "/srv/shop"))
        #expect(DirectoryRules.isWithin("/srv/shop", "/srv/shop/"))
        #expect(!DirectoryRules.isWithin("/srv/shopping", "/srv/shop"), "a prefix of the name is not a parent")
        #expect(DirectoryRules.isWithin("/anything", "/"))
    }

    @Test("/ and the system directories themselves are refused for every key, however written")
    func systemDirectories() {
        #expect(
            configFailure(appWith(#"state_directory = "/""#))
                == #"/etc/baton/shop.toml:6: app.state_directory: "/" is a system directory: baton needs a directory of its own, like /var/lib/baton/NAME"#
        )
        #expect(
            configFailure(appWith(#"runtime_directory = "/run/""#))
                == #"/etc/baton/shop.toml:6: app.runtime_directory: "/run" is a system directory: baton needs a directory of its own, like /run/baton/NAME"#
        )
        #expect(
            configFailure(minimalApp + "[deploy]\n" + #"releases_directory = "/srv/shop/../../""# + "\n")
                == #"/etc/baton/shop.toml:7: deploy.releases_directory: "/" is a system directory: baton needs a directory of its own, like /srv/NAME/releases"#
        )
        for path in ["/usr", "/usr/local", "/var/lib", "/var/run/", "/tmp", "/etc", "/home", "/var//tmp", "/srv/.", "/var/lib/baton"] {
            let message = configFailure(appWith("state_directory = \"\(path)\""))
            #expect(
                message?.contains("app.state_directory: \"\(DirectoryRules.normalize(path))\" is a system directory") == true,
                "\(path): \(message ?? "accepted")")
        }
    }

    @Test("baton's defaults and directories below the system ones are accepted")
    func defaultsAccepted() throws {
        let config = try parseConfig(
            appWith(#"state_directory = "/var/lib/baton/shop""# + "\n" + #"runtime_directory = "/run/baton/shop""#) + "[deploy]\n"
                + #"releases_directory = "/srv/shop/releases""# + "\n")
        #expect(config.app.stateDirectory == "/var/lib/baton/shop")
        #expect(config.deploy.releasesDirectory == "/srv/shop/releases")
        #expect(configFailure(appWith(#"state_directory = "/tmp/shop-state""#)) == nil)
    }

    @Test("a state or runtime directory holding the app's release, or the config file's folder, is refused")
    func appAndConfigFolders() {
        #expect(
            configFailure(appWith(#"state_directory = "/srv/shop""#))
                == #"/etc/baton/shop.toml:6: app.state_directory: "/srv/shop" contains the app's release directory "/srv/shop/current" (app.directory)"#
        )
        #expect(
            configFailure(appWith(#"runtime_directory = "/srv/shop/current/""#))
                == #"/etc/baton/shop.toml:6: app.runtime_directory: "/srv/shop/current" is the app's release directory (app.directory)"#)
        #expect(
            configFailure(appWith(#"state_directory = "/etc/baton/""#))
                == #"/etc/baton/shop.toml:6: app.state_directory: "/etc/baton" is a system directory: baton needs a directory of its own, like /var/lib/baton/NAME"#
        )
        // The config's folder comes from the file's path; a state directory inside it is fine.
        let text = appWith(#"state_directory = "/opt/shop/conf""#)
        #expect(
            (try? BatonConfig.parse(text, path: "/opt/shop/conf/baton.toml")) == nil,
            "the config file's folder itself")
        do {
            _ = try BatonConfig.parse(appWith(#"runtime_directory = "/opt/shop""#), path: "/opt/shop/conf/baton.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.description == #"/opt/shop/conf/baton.toml:6: app.runtime_directory: "/opt/shop" contains the config file's folder "/opt/shop/conf""#)
        }
        #expect((try? BatonConfig.parse(appWith(#"state_directory = "/opt/shop/conf/state""#), path: "/opt/shop/conf/baton.toml")) != nil)
    }

    @Test("the releases directory may hold the app's release but not be it, nor hold the config file's folder")
    func releasesDirectory() {
        #expect(configFailure(minimalApp + "[deploy]\n" + #"releases_directory = "/srv/shop""# + "\n") == nil)
        #expect(
            configFailure(minimalApp + "[deploy]\n" + #"releases_directory = "/srv/shop/current""# + "\n")
                == #"/etc/baton/shop.toml:7: deploy.releases_directory: "/srv/shop/current" is the app's release directory (app.directory)"#)
        do {
            _ = try BatonConfig.parse(minimalApp + "[deploy]\n" + #"releases_directory = "/srv/shop""# + "\n", path: "/srv/shop/baton.toml")
            Issue.record("accepted")
        } catch {
            #expect(error.description == #"/srv/shop/baton.toml:7: deploy.releases_directory: "/srv/shop" is the config file's folder"#)
        }
    }

    @Test("state, runtime and releases must be pairwise disjoint: equal, or one inside another, is refused")
    func overlaps() {
        #expect(
            configFailure(appWith(#"state_directory = "/srv/baton""# + "\n" + #"runtime_directory = "/srv/baton/""#))
                == #"/etc/baton/shop.toml:6: app.state_directory: "/srv/baton" is also app.runtime_directory "/srv/baton": the state, runtime and releases directories must not overlap"#
        )
        #expect(
            configFailure(appWith(#"runtime_directory = "/srv/b/run""# + "\n" + #"state_directory = "/srv/b""#))
                == #"/etc/baton/shop.toml:6: app.runtime_directory: "/srv/b/run" is inside app.state_directory "/srv/b": the state, runtime and releases directories must not overlap"#
        )
        // The releases directory holding the state directory: what made one deploy prune it.
        #expect(
            configFailure(appWith(#"state_directory = "/srv/shop/state""#) + "[deploy]\n" + #"releases_directory = "/srv/shop""# + "\n")
                == #"/etc/baton/shop.toml:6: app.state_directory: "/srv/shop/state" is inside deploy.releases_directory "/srv/shop": the state, runtime and releases directories must not overlap"#
        )
        // Unset keys are checked through their defaults, and reported on the key that is set.
        #expect(
            configFailure(minimalApp + "[deploy]\n" + #"releases_directory = "/run/baton/shop/releases""# + "\n")
                == #"/etc/baton/shop.toml:7: deploy.releases_directory: "/run/baton/shop/releases" is inside the default runtime_directory "/run/baton/shop" (app.runtime_directory is not set): the state, runtime and releases directories must not overlap"#
        )
        #expect(configFailure(appWith(#"state_directory = "/srv/a""# + "\n" + #"runtime_directory = "/srv/ab""#)) == nil)
    }

    @Test("violations names every set key involved and never a default")
    func violationsDirect() {
        let state = DirectoryRules.Entry(key: ["app", "state_directory"], path: "/x")
        let runtime = DirectoryRules.Entry(key: ["app", "runtime_directory"], path: "/x/run")
        let releases = DirectoryRules.Entry(key: ["deploy", "releases_directory"], path: "/y")
        let found = DirectoryRules.violations(state: state, runtime: runtime, releases: releases, appDirectory: "/y/1", configFolder: nil)
        #expect(found.map { $0.key.joined(separator: ".") } == ["app.state_directory", "app.runtime_directory"])
        let defaults = DirectoryRules.violations(
            state: .init(key: ["app", "state_directory"], path: "/", isDefault: true),
            runtime: .init(key: ["app", "runtime_directory"], path: "/", isDefault: true), releases: nil, appDirectory: "/srv/a",
            configFolder: "/")
        #expect(defaults.isEmpty)
    }
}
