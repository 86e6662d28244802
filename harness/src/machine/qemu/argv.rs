//! The one place QEMU's argv is built, per architecture (a pure function
//! of [`QemuConfig`], unit-tested for each arch).

use std::path::PathBuf;

use crate::image::BootMethod;
use crate::template::variant::Arch;

use super::accel::Accel;

/// UEFI firmware for aarch64 (Debian `qemu-efi-aarch64`).
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
pub const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// What the guest's user network lets it reach.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GuestNet {
    /// QEMU's user network as is: the guest reaches the host's loopback as
    /// 169.0.0.2 (slirp's host address) and, through NAT, anything the host
    /// reaches. The fixture and contract guests use it.
    #[default]
    Open,
    /// `restrict=on`: the guest opens no connection except through the
    /// explicit forwards (QEMU's `-netdev user` docs: restrict "does not
    /// affect any explicitly set forwarding rules"; in libslirp a new TCP
    /// connection from the guest is dropped unless it matches a guestfwd,
    /// and guest UDP other than DHCP/TFTP is dropped). Forwards: IMDS, SSH
    /// (hostfwd) and each of `host_ports` as `169.0.0.2:<port>`, relayed to
    /// the host's `127.0.0.1:<port>`, so URLs the guest was given keep
    /// working. libslirp refuses a guestfwd on its own host address, so the
    /// host address moves to 169.0.0.1 (nothing in the guest uses it: the
    /// whole /8 is on-link). The NixOS test image uses it: offline.
    Offline { host_ports: Vec<u16> },
}

/// The guest address of slirp's host in [`GuestNet::Open`] (and of the
/// relayed host ports in [`GuestNet::Offline`]).
pub const GUEST_HOST_ADDR: &str = "169.0.0.2";

/// The `-netdev user,...` value for `cfg` (unit-tested per [`GuestNet`]).
pub fn netdev(cfg: &QemuConfig) -> String {
    let common = "user,id=n0,net=169.0.0.0/8,dhcpstart=169.0.0.15";
    let fwd = format!(
        "hostfwd=tcp:127.0.0.1:{}-:22,guestfwd=tcp:169.254.169.254:80-{}",
        cfg.ssh_port, cfg.imds_guestfwd_cmd
    );
    match &cfg.net {
        GuestNet::Open => format!("{common},host={GUEST_HOST_ADDR},{fwd}"),
        GuestNet::Offline { host_ports } => {
            let mut s = format!("{common},host=169.0.0.1,restrict=on,{fwd}");
            for p in host_ports {
                s.push_str(&format!(
                    ",guestfwd=tcp:{GUEST_HOST_ADDR}:{p}-{}",
                    crate::machine::imds::relay_cmd(&cfg.relay_exe, *p)
                ));
            }
            s
        }
    }
}

/// Everything argv depends on.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    pub arch: Arch,
    pub accel: Accel,
    /// Unique name, also visible in `ps` (hygiene tests find QEMUs by it).
    pub name: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub boot: BootMethod,
    pub root_overlay: PathBuf,
    pub home_disk: PathBuf,
    /// Serial of the home disk (the instance's home volume id, ≤ 20 chars).
    pub home_serial: String,
    /// Writable copy of the UEFI VARS (aarch64 firmware boot only).
    pub uefi_vars: Option<PathBuf>,
    pub serial_log: PathBuf,
    pub qmp_socket: PathBuf,
    /// Unix socket the harness listens on; QEMU connects as the hvc0 backend.
    pub probe_socket: PathBuf,
    /// Loopback port forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// `cmd:…` for the guestfwd of 169.254.169.254:80 (see `imds::relay_cmd`).
    pub imds_guestfwd_cmd: String,
    /// What the guest network reaches.
    pub net: GuestNet,
    /// The harness binary the `cmd:` relays of [`GuestNet::Offline`] run.
    pub relay_exe: PathBuf,
}

impl QemuConfig {
    pub fn binary(&self) -> &'static str {
        match self.arch {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }
}

/// QEMU's `-drive`/`-chardev` option values escape commas by doubling.
fn esc(p: &std::path::Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// The argv (without the binary) for `cfg`.
pub fn build(cfg: &QemuConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-name", &cfg.name]);
    // Under KVM the guest gets the host CPU (`max` asks KVM for MSRs some
    // hosts refuse); under TCG `max` emulates every feature QEMU has. On
    // aarch64 `pauth-impdef=on` keeps pointer authentication but signs with
    // QEMU's own fast hash instead of emulating the architected QARMA5
    // cipher, which the guest kernel runs on every function entry and
    // return (QEMU docs/system/arm/cpu-features.rst: "the architected
    // QARMA5 algorithm is slow to emulate").
    let cpu = match (cfg.accel, cfg.arch) {
        (Accel::Kvm, _) => "host",
        (_, Arch::X86_64) => "max",
        (_, Arch::Aarch64) => "max,pauth-impdef=on",
    };
    match cfg.arch {
        Arch::X86_64 => push(&["-machine", "q35", "-cpu", cpu]),
        Arch::Aarch64 => push(&["-machine", "virt,gic-version=max", "-cpu", cpu]),
    }
    push(&["-accel", cfg.accel.qemu_arg()]);
    push(&[
        "-m",
        &cfg.memory_mib.to_string(),
        "-smp",
        &cfg.cpus.to_string(),
    ]);
    // -no-reboot: a guest panic or reboot ends QEMU instead of looping.
    push(&[
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-user-config",
        "-nodefaults",
        "-no-reboot",
    ]);
    // append=on: a restart of the same instance continues the log (a
    // plain `-serial file:` truncates it, losing the previous boot).
    push(&[
        "-chardev",
        &format!("file,id=serial0,path={},append=on", esc(&cfg.serial_log)),
        "-serial",
        "chardev:serial0",
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", esc(&cfg.qmp_socket)),
    ]);
    // Probe: a root shell on hvc0; QEMU connects to the harness's socket so
    // nothing the guest prints is lost before the harness attaches.
    push(&[
        "-chardev",
        &format!("socket,id=probe,path={}", esc(&cfg.probe_socket)),
        "-device",
        "virtio-serial-pci",
        "-device",
        "virtconsole,chardev=probe,name=harness.probe",
    ]);
    // Root disk: a qcow2 overlay over the read-only base image.
    push(&[
        "-drive",
        &format!(
            "file={},if=none,id=root,format=qcow2",
            esc(&cfg.root_overlay)
        ),
        "-device",
        "virtio-blk-pci,drive=root",
    ]);
    // Home disk: second drive, stable serial (the guest names it /dev/xvdb).
    push(&[
        "-drive",
        &format!("file={},if=none,id=home,format=qcow2", esc(&cfg.home_disk)),
        "-device",
        &format!("virtio-blk-pci,drive=home,serial={}", cfg.home_serial),
    ]);
    // User networking with net=169.0.0.0/8 (nixpkgs ec2 test trick): the
    // metadata address is on-link; guestfwd relays it to the host's IMDS.
    push(&[
        "-netdev",
        &netdev(cfg),
        "-device",
        "virtio-net-pci,netdev=n0",
    ]);
    match &cfg.boot {
        BootMethod::Direct {
            kernel,
            initrd,
            append,
        } => push(&[
            "-kernel",
            &kernel.display().to_string(),
            "-initrd",
            &initrd.display().to_string(),
            "-append",
            append,
        ]),
        BootMethod::Firmware => {
            if cfg.arch == Arch::Aarch64 {
                let vars = cfg
                    .uefi_vars
                    .as_ref()
                    .expect("aarch64 firmware boot needs VARS");
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,readonly=on,file={AAVMF_CODE}"),
                    "-drive",
                    &format!("if=pflash,format=raw,file={}", esc(vars)),
                ]);
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: Arch, boot: BootMethod) -> QemuConfig {
        QemuConfig {
            arch,
            accel: Accel::Tcg,
            name: "harness-test".into(),
            memory_mib: 1024,
            cpus: 2,
            boot,
            root_overlay: "/t/root.qcow2".into(),
            home_disk: "/t/home.qcow2".into(),
            home_serial: "vol-0123456789abcdef".into(),
            uefi_vars: Some("/t/vars.fd".into()),
            serial_log: "/t/serial.log".into(),
            qmp_socket: "/t/qmp.sock".into(),
            probe_socket: "/t/probe.sock".into(),
            ssh_port: 2222,
            imds_guestfwd_cmd: "cmd:'/bin/harness' relay 4242".into(),
            net: GuestNet::Open,
            relay_exe: "/bin/harness".into(),
        }
    }

    fn joined(c: &QemuConfig) -> String {
        build(c).join(" ")
    }

    #[test]
    fn x86_64_is_q35_with_direct_boot() {
        let c = cfg(
            Arch::X86_64,
            BootMethod::Direct {
                kernel: "/k".into(),
                initrd: "/i".into(),
                append: "console=ttyS0".into(),
            },
        );
        assert_eq!(c.binary(), "qemu-system-x86_64");
        let s = joined(&c);
        assert!(s.contains("-machine q35"), "{s}");
        assert!(
            s.contains("-kernel /k -initrd /i -append console=ttyS0"),
            "{s}"
        );
        assert!(!s.contains("pflash"), "{s}");
        assert!(s.contains("-accel tcg"), "{s}");
    }

    #[test]
    fn aarch64_is_virt_gic_max_cpu_max_with_uefi_pflash() {
        let c = cfg(Arch::Aarch64, BootMethod::Firmware);
        assert_eq!(c.binary(), "qemu-system-aarch64");
        let s = joined(&c);
        assert!(
            s.contains("-machine virt,gic-version=max -cpu max,pauth-impdef=on"),
            "{s}"
        );
        assert!(
            s.contains(&format!(
                "if=pflash,format=raw,readonly=on,file={AAVMF_CODE}"
            )),
            "{s}"
        );
        assert!(s.contains("if=pflash,format=raw,file=/t/vars.fd"), "{s}");
    }

    #[test]
    fn disks_network_and_channels() {
        let s = joined(&cfg(Arch::X86_64, BootMethod::Firmware));
        assert!(
            s.contains("file=/t/root.qcow2,if=none,id=root,format=qcow2"),
            "{s}"
        );
        assert!(
            s.contains("virtio-blk-pci,drive=home,serial=vol-0123456789abcdef"),
            "{s}"
        );
        assert!(s.contains("net=169.0.0.0/8"), "{s}");
        assert!(s.contains("hostfwd=tcp:127.0.0.1:2222-:22"), "{s}");
        assert!(
            s.contains("guestfwd=tcp:169.254.169.254:80-cmd:'/bin/harness' relay 4242"),
            "{s}"
        );
        assert!(
            !s.contains("-tcp:"),
            "the chardev guestfwd form does not answer here: {s}"
        );
        assert!(
            s.contains("file,id=serial0,path=/t/serial.log,append=on"),
            "{s}"
        );
        assert!(
            s.contains("-qmp unix:/t/qmp.sock,server=on,wait=off"),
            "{s}"
        );
        assert!(s.contains("virtconsole,chardev=probe"), "{s}");
    }

    #[test]
    fn commas_in_paths_are_escaped() {
        let mut c = cfg(Arch::X86_64, BootMethod::Firmware);
        c.root_overlay = "/t/a,b/root.qcow2".into();
        assert!(joined(&c).contains("file=/t/a,,b/root.qcow2"));
    }

    #[test]
    fn open_network_keeps_slirp_host_at_169_0_0_2_unrestricted() {
        let c = cfg(Arch::X86_64, BootMethod::Firmware);
        let n = netdev(&c);
        assert!(n.contains(",host=169.0.0.2,"), "{n}");
        assert!(!n.contains("restrict"), "{n}");
        assert_eq!(n.matches("guestfwd=").count(), 1, "{n}");
    }

    #[test]
    fn offline_network_is_restricted_and_relays_only_the_given_host_ports() {
        let mut c = cfg(Arch::X86_64, BootMethod::Firmware);
        c.net = GuestNet::Offline {
            host_ports: vec![7080, 7081],
        };
        let n = netdev(&c);
        assert!(n.contains(",restrict=on,"), "{n}");
        // libslirp refuses a guestfwd on its host address: it must move.
        assert!(n.contains(",host=169.0.0.1,"), "{n}");
        assert!(!n.contains("host=169.0.0.2"), "{n}");
        assert!(n.contains("hostfwd=tcp:127.0.0.1:2222-:22"), "{n}");
        assert!(
            n.contains("guestfwd=tcp:169.254.169.254:80-cmd:'/bin/harness' relay 4242"),
            "{n}"
        );
        assert!(
            n.contains("guestfwd=tcp:169.0.0.2:7080-cmd:'/bin/harness' relay 7080"),
            "{n}"
        );
        assert!(
            n.contains("guestfwd=tcp:169.0.0.2:7081-cmd:'/bin/harness' relay 7081"),
            "{n}"
        );
        assert!(
            joined(&c).contains(&format!("-netdev {n} ")),
            "argv uses netdev()"
        );
    }
}
