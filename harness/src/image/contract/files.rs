//! The contract guest's own files (from `harness/contract-guest/`), before
//! placeholder substitution: scripts that become store packages, systemd
//! units, /etc, and the per-configuration declaration data the
//! `nixos-rebuild` double reads.

/// Where a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A script installed as `/nix/store/<hash>-<name>/bin/<name>` (0555);
    /// `@<name>@` names that store path in other files.
    Script(&'static str),
    /// A file at this path (relative to `/`) with this mode.
    Path(&'static str, u32),
}

/// One guest file: where it goes and its text (with `@…@` placeholders).
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub place: Place,
    pub content: &'static str,
}

macro_rules! src {
    ($file:expr) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contract-guest/",
            $file
        ))
    };
}

/// The initramfs's /init.
pub const INITRAMFS_INIT: &str = src!("initramfs-init");

/// Every file the guest ships (the cache key hashes them all).
pub fn sources() -> Vec<Source> {
    use Place::{Path, Script};
    let s = |place, content| Source { place, content };
    vec![
        s(Script("nixos-rebuild"), src!("nixos-rebuild")),
        s(Script("contract-activate"), src!("contract-activate")),
        s(Script("ec2-metadata-fetcher"), src!("ec2-metadata-fetcher")),
        s(Script("apply-ec2-data"), src!("apply-ec2-data")),
        s(Script("amazon-init"), src!("amazon-init")),
        s(Script("probe-shell"), src!("probe-shell")),
        // units (enabled by the build: see mod.rs ENABLE)
        s(
            Path("etc/systemd/system/amazon-init.service", 0o644),
            src!("units/amazon-init.service"),
        ),
        s(
            Path("etc/systemd/system/fetch-ec2-metadata.service", 0o644),
            src!("units/fetch-ec2-metadata.service"),
        ),
        s(
            Path("etc/systemd/system/apply-ec2-data.service", 0o644),
            src!("units/apply-ec2-data.service"),
        ),
        s(
            Path("etc/systemd/system/sshd.service", 0o644),
            src!("units/sshd.service"),
        ),
        s(
            Path("etc/systemd/system/harness-probe.service", 0o644),
            src!("units/harness-probe.service"),
        ),
        s(
            Path("etc/systemd/system/contract-activation.service", 0o644),
            src!("units/contract-activation.service"),
        ),
        s(
            Path("etc/systemd/system/contract-filesystems.service", 0o644),
            src!("units/contract-filesystems.service"),
        ),
        s(
            Path(
                "etc/systemd/system.conf.d/10-nixos-default-path.conf",
                0o644,
            ),
            src!("etc/default-path.conf"),
        ),
        s(
            Path("etc/systemd/network/80-ec2.network", 0o644),
            src!("etc/80-ec2.network"),
        ),
        s(
            Path("etc/udev/rules.d/70-ec2-xvdb.rules", 0o644),
            src!("etc/70-ec2-xvdb.rules"),
        ),
        // /etc
        s(Path("etc/passwd", 0o644), src!("etc/passwd")),
        s(Path("etc/group", 0o644), src!("etc/group")),
        s(Path("etc/shadow", 0o640), src!("etc/shadow")),
        s(
            Path("etc/set-environment", 0o644),
            src!("etc/set-environment"),
        ),
        s(Path("etc/profile", 0o644), src!("etc/profile")),
        s(Path("etc/bash.bashrc", 0o644), src!("etc/bash.bashrc")),
        s(Path("etc/ssh/sshd_config", 0o644), src!("etc/sshd_config")),
        s(Path("etc/nsswitch.conf", 0o644), src!("etc/nsswitch.conf")),
        s(
            Path("usr/lib/tmpfiles.d/tmp.conf", 0o644),
            src!("etc/tmpfiles-tmp.conf"),
        ),
        s(Path("etc/os-release", 0o644), src!("etc/os-release")),
        s(Path("etc/pam.d/other", 0o644), src!("etc/pam-common")),
        s(Path("etc/pam.d/login", 0o644), src!("etc/pam-common")),
        s(Path("etc/pam.d/su", 0o644), src!("etc/pam-sudo")),
        s(Path("etc/pam.d/sudo", 0o644), src!("etc/pam-sudo")),
        s(Path("etc/pam.d/sudo-i", 0o644), src!("etc/pam-sudo")),
        s(Path("etc/pam.d/sshd", 0o644), src!("etc/pam-sshd")),
        s(
            Path("etc/pam.d/systemd-user", 0o644),
            src!("etc/pam-common"),
        ),
        s(
            Path("etc/contract/base-users", 0o644),
            src!("etc/base-users"),
        ),
        s(Path("etc/contract/wrappers", 0o644), src!("etc/wrappers")),
        s(
            Path("etc/contract/bootstrap.declares.json", 0o644),
            src!("bootstrap.declares.json"),
        ),
        // the fixture flakes' declarations (nixos-vm/fixtures/*)
        s(
            Path("var/lib/harness/fixtures/good/declares.json", 0o644),
            src!("fixtures/good/declares.json"),
        ),
        s(
            Path("var/lib/harness/fixtures/broken/declares.json", 0o644),
            src!("fixtures/broken/declares.json"),
        ),
        s(
            Path("var/lib/harness/fixtures/broken-build/declares.json", 0o644),
            src!("fixtures/broken-build/declares.json"),
        ),
        s(
            Path("var/lib/harness/fixtures/no-home/declares.json", 0o644),
            src!("fixtures/no-home/declares.json"),
        ),
        s(
            Path(
                "var/lib/harness/fixtures/home-other-device/declares.json",
                0o644,
            ),
            src!("fixtures/home-other-device/declares.json"),
        ),
        s(
            Path(
                "var/lib/harness/fixtures/activation-aborts/declares.json",
                0o644,
            ),
            src!("fixtures/activation-aborts/declares.json"),
        ),
    ]
}

/// Units enabled in the image: (unit, target whose `.wants` links it).
pub const ENABLE: &[(&str, &str)] = &[
    ("amazon-init.service", "multi-user.target"),
    ("fetch-ec2-metadata.service", "multi-user.target"),
    ("apply-ec2-data.service", "multi-user.target"),
    ("sshd.service", "multi-user.target"),
    ("harness-probe.service", "sysinit.target"),
    ("contract-activation.service", "sysinit.target"),
    ("contract-filesystems.service", "local-fs.target"),
    ("systemd-networkd.service", "multi-user.target"),
    ("systemd-networkd.socket", "sockets.target"),
    (
        "systemd-networkd-wait-online.service",
        "network-online.target",
    ),
    ("dbus.socket", "sockets.target"),
];

/// Units masked (linked to /dev/null): API file systems systemd would
/// mount through Debian's compiled-in /bin/mount (absent here, as on
/// NixOS), gettys (the harness uses hvc0 and SSH; hvc0 is the probe's),
/// and the fstab machinery contract-filesystems.service stands in for.
pub const MASK: &[&str] = &[
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "proc-sys-fs-binfmt_misc.automount",
    "tmp.mount",
    "systemd-remount-fs.service",
    "serial-getty@hvc0.service",
    "serial-getty@ttyS0.service",
    "serial-getty@ttyAMA0.service",
    "getty@tty1.service",
    "systemd-firstboot.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
];
