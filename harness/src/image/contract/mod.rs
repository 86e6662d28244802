//! THE CONTRACT GUEST: a named double of the NixOS AMI, built from Debian
//! packages with real systemd, that keeps — point by point — the contract
//! a NixOS AMI offers user-data (docs/contract-guest.md):
//!
//! 1. `amazon-init.service` runs on every boot after the network and
//!    `fetch-ec2-metadata` (IMDSv2), and runs a `#!` user-data with bash,
//!    with exactly amazon-init.nix's PATH ([`AMAZON_INIT_PATH`] then
//!    [`SERVICE_PATH`]) and NIX_PATH.
//! 2. systemd's default unit PATH is systemd's own bin only
//!    (`DefaultEnvironment=`), so a transient `systemd-run` unit without
//!    PATH finds no `sh`, `curl` or `sudo`.
//! 3. NixOS's layout: `/bin/sh` and `/usr/bin/env` are the only FHS
//!    executables; everything else lives in `/nix/store/<hash>-<pkg>/bin`
//!    and is reachable through `/run/current-system/sw/bin`; `sudo` is a
//!    setuid wrapper in `/run/wrappers/bin`; `/etc/profiles/per-user/<u>/bin`.
//! 4. `nixos-rebuild` is a named double (`harness/contract-guest/nixos-rebuild`)
//!    that applies what a configuration DECLARES (data, never Nix) in
//!    NixOS's activation order.
//!
//! Public API (small on purpose):
//! - [`build`] / [`build_in`] — the cached [`BootImage`] for an arch
//!   (`ImageKind::Contract`, direct kernel boot).
//! - [`cache_root`] — `<target>/contract-images`.
//! - [`AMAZON_INIT_PATH`], [`SERVICE_PATH`] — the nixpkgs packages on
//!   amazon-init's PATH, in order.
//! - [`GUEST_FIXTURES`], [`BOOTSTRAP_DATA`] — where the declaration data
//!   lives in the guest.
//!
//! Cache: `<target>/contract-images/<arch>/<key>/{vmlinuz,initrd.img,root.raw,manifest.json}`;
//! `key` hashes this module's source, every package (name, version, sha256)
//! and every guest file, so a warm run costs nothing.  Built without root
//! privileges beyond file ownership (`dpkg -x`, `mkfs.ext4 -d`, `cpio`): no
//! chroot, no maintainer scripts, no qemu-user, so both arches build alike.

pub mod files;
pub mod layout;
pub mod packages;
pub mod selftest;

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::debian::packages::{self as debs, Pkg};
use super::debian::{assemble, kmod};
use super::{BootImage, BootMethod, ImageKind};
use crate::template::variant::Arch;

/// nixpkgs packages amazon-init.nix puts first on its script's PATH, in
/// order (nixos/modules/virtualisation/amazon-init.nix:
/// `config.nix.package config.systemd.package gnugrep git gnutar gzip
/// gnused xz config.system.build.nixos-rebuild`).
pub const AMAZON_INIT_PATH: &[&str] = &[
    "nix",
    "systemd",
    "gnugrep",
    "git",
    "gnutar",
    "gzip",
    "gnused",
    "xz",
    "nixos-rebuild",
];

/// The NixOS default service path every unit gets after its own `path`
/// (nixos/lib/systemd-lib.nix: `coreutils findutils gnugrep gnused
/// systemd`), `bin` then `sbin`.
pub const SERVICE_PATH: &[&str] = &["coreutils", "findutils", "gnugrep", "gnused", "systemd"];

/// Where the fixture flakes' declaration data lives in the guest
/// (`<dir>/<name>/declares.json`; same dir as the NixOS test image's flake).
pub const GUEST_FIXTURES: &str = "/var/lib/harness/fixtures";
/// What the bootstrap configuration declares (per bootstrap.nix sha256).
pub const BOOTSTRAP_DATA: &str = "/etc/contract/bootstrap.declares.json";

/// The build recipe itself, so a change to how the image is built changes
/// the cache key.
const RECIPE: [&str; 4] = [
    include_str!("mod.rs"),
    include_str!("files.rs"),
    include_str!("layout.rs"),
    include_str!("packages.rs"),
];
/// Size of the (sparse) root disk image.
const ROOT_MIB: u64 = 3072;
/// ext4 label the initramfs looks for.
const ROOT_LABEL: &str = "contract-root";
/// The guest's store packages NixOS 26.05 puts on `/run/current-system/sw`
/// by default: `nixos/modules/config/system-path.nix` corePackages (acl,
/// attr, bashInteractive, bzip2, coreutils-full, cpio, curl, diffutils,
/// findutils, gawk, getent/getconf and `stdenv.cc.libc` = glibc, gnugrep,
/// gnupatch, gnused, gnutar, gzip, xz, less, libcap, ncurses, netcat,
/// mkpasswd, procps, su, time, util-linux, which, zstd) and defaultPackages
/// (perl, rsync, strace), plus what the AMI's modules add (systemd, dbus,
/// openssh, sudo, shadow, iproute2, kmod, e2fsprogs for ext4, nix,
/// nixos-rebuild).  The guest's Debian packages for the others named there
/// are not built in (docs/contract-guest.md, "cannot model"); everything
/// else the guest carries (jq, git, dpkg, debconf, …) stays off sw: the
/// bootstrap adds git itself.
pub const NIXOS_BASE_SW: &[&str] = &[
    "bash",
    "coreutils",
    "curl",
    "diffutils",
    "findutils",
    "gawk",
    "glibc",
    "gnugrep",
    "gnused",
    "gnutar",
    "gzip",
    "xz",
    "less",
    "libcap",
    "procps",
    "util-linux",
    "which",
    "perl",
    "systemd",
    "dbus",
    "openssh",
    "sudo",
    "shadow",
    "iproute2",
    "kmod",
    "e2fsprogs",
    "nix",
    "nixos-rebuild",
];

/// The plan (see the nixos-rebuild double) of generation 1, the AMI's own
/// configuration: no users, sudo for wheel with a password, no file
/// systems beyond the root, no services.
const AMI_PLAN: &str = "NAME='ami'
EVAL_ERROR=''
BUILD_DRV=''
BUILD_LOG=()
PRE_SWITCH_CHECK_FAILS=0
WHEEL_NOPASSWD=0
SYSTEM_PACKAGES=()
USERS=()
declare -A U_GROUP=() U_HOME=() U_SHELL=() U_CREATE=() U_MODE=() U_EXTRA=() U_PKGS=()
SERVICES=()
declare -A S_DESC=() S_SCRIPT=() S_CONFIG=()
FILESYSTEMS=()
declare -A F_DEV=() F_TYPE=() F_OPTS=()
";

/// `etc/fstab` of a configuration without file systems of its own, as the
/// nixos-rebuild double writes it.
const FSTAB_EMPTY: &str = "# This is a generated file.  Do not edit!
#
# To make changes, edit the fileSystems and swapDevices NixOS options
# in your /etc/nixos/configuration.nix file.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>

# Filesystems.

# Swap devices.
";

/// The store path of the system-path (`sw`) of package set `pkgs`, named
/// exactly as the nixos-rebuild double names it: sha256 of the sorted
/// names, one a line, hex with `e` read as `f`, 32 characters.
pub fn system_path_name(pkgs: &[String]) -> String {
    let set: std::collections::BTreeSet<&str> = pkgs.iter().map(String::as_str).collect();
    let mut text = String::new();
    for p in set {
        text.push_str(p);
        text.push('\n');
    }
    let hex = hex::encode(Sha256::digest(text.as_bytes())).replace('e', "f");
    format!("/nix/store/{}-system-path", &hex[..32])
}

/// The base system path's packages among the guest's store `groups`.
fn base_packages(groups: &BTreeMap<String, String>) -> anyhow::Result<Vec<String>> {
    let missing: Vec<&str> = NIXOS_BASE_SW
        .iter()
        .copied()
        .filter(|p| !groups.contains_key(*p))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the contract guest has no store package for {missing:?} (NIXOS_BASE_SW): \
         check packages::ROOTFS_PACKAGES and packages::nix_name"
    );
    let mut base: Vec<String> = NIXOS_BASE_SW.iter().map(|s| s.to_string()).collect();
    base.sort();
    Ok(base)
}

/// `environment.systemPackages` of every configuration the image ships
/// declarations for (the bootstrap and the fixture flakes).
fn shipped_system_packages() -> anyhow::Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for s in files::sources() {
        let files::Place::Path(p, _) = s.place else {
            continue;
        };
        if !p.ends_with(".json")
            || !(p.contains("fixtures/") || p.ends_with("bootstrap.declares.json"))
        {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(s.content).with_context(|| format!("guest file {p}"))?;
        let d = v.get("declares").unwrap_or(&v);
        if d.get("build_error").is_some() || d.get("eval_error").is_some() {
            continue; // never built
        }
        let pkgs = d["systemPackages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push(pkgs);
    }
    Ok(out)
}

/// A store directory `dir` whose bin links every executable of `pkgs`.
fn link_bins(
    root: &Path,
    groups: &BTreeMap<String, String>,
    pkgs: &[String],
    dir: &str,
) -> anyhow::Result<()> {
    let sp = root.join(dir.trim_start_matches('/')).join("bin");
    std::fs::create_dir_all(&sp)?;
    for g in pkgs {
        let Some(gdir) = groups.get(g) else {
            continue;
        };
        let Ok(rd) = std::fs::read_dir(root.join(gdir.trim_start_matches('/')).join("bin")) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            symlink(&format!("{gdir}/bin/{}", n.to_string_lossy()), &sp.join(&n))?;
        }
    }
    Ok(())
}

/// Kernel command line.  Two settings are for emulation speed only (no
/// part of the contract depends on them; measured with four x86_64
/// scenarios on two guests under TCG, `harness e2e --name …`, QEMU's CPU
/// read from `/proc`):
/// - x86_64 `tsc=reliable`: with two vCPUs the kernel found the emulated
///   TSCs "unsynchronized" and fell back to the HPET, so every clock read
///   (systemd, journald, bash) was a system call and an emulated MMIO read;
///   with the TSC the vDSO answers in user space (QEMU CPU 251–262 s → 214 s,
///   wall 2:21–2:28 → 2:02). aarch64 already uses its generic timer.
/// - `mitigations=off`: no retpolines, RSB filling or branch-history
///   clearing on every kernel entry, which cost emulated instructions and
///   protect nothing in a throwaway test guest.
///
/// And one for emulation under load: x86_64 `no_timer_check`. At boot the
/// kernel counts timer interrupts over a short busy wait on the TSC
/// (`timer_irq_works`, arch/x86/kernel/apic/io_apic.c) and panics with
/// "IO-APIC + timer doesn't work!" when too few came; an emulated guest
/// whose QEMU thread the host does not run during that wait sees none
/// (seen once in ci/test.sh: a pool guest booting beside four twin lives
/// and a second guest on two cores). The parameter skips the count
/// (Documentation/admin-guide/kernel-parameters.txt: "Disables the code
/// which tests for broken timer IRQ sources"); QEMU's timer works.
pub fn append(arch: Arch) -> String {
    let (console, clock) = match arch {
        Arch::X86_64 => ("ttyS0", " tsc=reliable no_timer_check"),
        Arch::Aarch64 => ("ttyAMA0", ""),
    };
    format!(
        "console={console} root=LABEL={ROOT_LABEL} rw panic=-1 systemd.show_status=1{clock} mitigations=off"
    )
}

/// `x86_64-linux` / `aarch64-linux`.
fn nix_system(arch: Arch) -> String {
    format!("{}-linux", arch.as_str())
}

/// Where contract images are cached for a repository.
pub fn cache_root(repo_root: &Path) -> PathBuf {
    crate::repo::target_dir(repo_root).join("contract-images")
}

/// The cache key: recipe, arch, kernel, every package and every guest file.
pub fn cache_key(arch: Arch, kernel: &Pkg, busybox: &Pkg, pkgs: &[Pkg]) -> String {
    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    for r in RECIPE {
        field(r);
    }
    field(arch.as_str());
    field(&ROOT_MIB.to_string());
    field(&append(arch));
    for p in [kernel, busybox].into_iter().chain(pkgs) {
        field(&format!("{} {} {} {}", p.name, p.version, p.arch, p.sha256));
    }
    for (m, req) in kmod::wanted(arch) {
        field(&format!("{m} {req}"));
    }
    field(files::INITRAMFS_INIT);
    for s in files::sources() {
        field(&format!("{:?}", s.place));
        field(s.content);
    }
    hex::encode(&h.finalize()[..10])
}

fn progress(arch: Arch, msg: &str) {
    eprintln!("contract image [{arch}]: {msg}");
}

/// Builds (or finds in the cache) the contract guest for `arch` of the
/// repository at `repo_root`.  Blocking; call from `spawn_blocking`.
pub fn build(repo_root: &Path, arch: Arch) -> anyhow::Result<BootImage> {
    build_in(&cache_root(repo_root), arch)
}

/// [`build`] with an explicit cache directory.
pub fn build_in(cache: &Path, arch: Arch) -> anyhow::Result<BootImage> {
    // The private apt root (`<cache>/../apt-root`):
    // never the host's apt state.
    let apt = crate::image::apt_root::AptRoot::shared(cache.parent().unwrap_or(cache))?;
    debs::check_host()?;
    crate::tools::find("mkfs.ext4")?;
    crate::tools::find("cpio")?;
    apt.ensure_updated()?;
    let rkey = packages::resolution_key(
        &apt.lists_fingerprint()?,
        arch,
        &debs::kernel_metapackage(arch),
    );
    let (r, kept) = packages::memo(
        &cache.join(arch.as_str()).join("resolution.json"),
        &rkey,
        || {
            progress(arch, "resolving Debian packages (apt-get -s, empty status)");
            resolve(&apt, arch, &rkey)
        },
    )?;
    if kept {
        progress(
            arch,
            "Debian packages: the resolution kept for these apt lists",
        );
    }
    let packages::Resolution {
        kernel,
        busybox,
        pkgs,
        ..
    } = r;
    let key = cache_key(arch, &kernel, &busybox, &pkgs);
    super::build_once(
        &cache.join(arch.as_str()),
        &key,
        |msg| progress(arch, msg),
        |dir| cached(dir, arch, &kernel, &key),
        |out| build_into(out, &apt, arch, &kernel, &busybox, &pkgs, &key),
    )
}

/// The kernel, busybox and root file system packages the apt root
/// resolves for `arch` now, under resolution key `key`.
fn resolve(
    apt: &crate::image::apt_root::AptRoot,
    arch: Arch,
    key: &str,
) -> anyhow::Result<packages::Resolution> {
    let kernel_name = debs::resolve_kernel_package(apt, arch)?;
    let wanted: Vec<String> = packages::ROOTFS_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names = packages::closure(apt, &wanted, arch)?;
    let pkgs = debs::resolve(apt, &names, arch)?;
    let mut extra = debs::resolve(
        apt,
        &[kernel_name.clone(), "busybox-static".to_string()],
        arch,
    )?;
    let bpos = extra
        .iter()
        .position(|p| p.name == "busybox-static")
        .context("busybox-static vanished from the resolution")?;
    let busybox = extra.remove(bpos);
    let kernel = extra.pop().context("kernel package vanished")?;
    Ok(packages::Resolution {
        key: key.to_string(),
        kernel,
        busybox,
        pkgs,
    })
}

fn cached(dir: &Path, arch: Arch, kernel: &Pkg, key: &str) -> Option<BootImage> {
    let files = ["vmlinuz", "initrd.img", "root.raw", "manifest.json"];
    if !files.iter().all(|f| dir.join(f).is_file()) {
        return None;
    }
    Some(BootImage {
        arch,
        kind: ImageKind::Contract,
        base: dir.join("root.raw"),
        base_format: "raw".into(),
        boot: BootMethod::Direct {
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            append: append(arch),
        },
        description: format!(
            "contract guest (Debian {} {} + systemd keeping the NixOS AMI's contract; a double, not NixOS), cache {key}",
            kernel.name, kernel.version
        ),
    })
}

/// Upstream version for a store name: no epoch, no Debian revision.
fn upstream(version: &str) -> String {
    let v = version.split_once(':').map(|x| x.1).unwrap_or(version);
    let v = v.rsplit_once('-').map(|x| x.0).unwrap_or(v);
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_file(root: &Path, rel: &str, mode: u32, content: &str) -> anyhow::Result<()> {
    let p = root.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn symlink(target: &str, link: &Path) -> anyhow::Result<()> {
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("symlink {} -> {target}", link.display()))
}

fn build_into(
    out: &Path,
    apt: &crate::image::apt_root::AptRoot,
    arch: Arch,
    kernel: &Pkg,
    busybox: &Pkg,
    pkgs: &[Pkg],
    key: &str,
) -> anyhow::Result<()> {
    let work = out.join("work");
    let debs_dir = work.join("debs");
    let ktree = work.join("kernel");
    let bbtree = work.join("busybox");
    let root = work.join("rootfs");
    let initramfs = work.join("initramfs");
    for d in [&debs_dir, &ktree, &bbtree, &root, &initramfs] {
        std::fs::create_dir_all(d)?;
    }
    progress(
        arch,
        &format!("apt-get download: {} packages", pkgs.len() + 2),
    );
    let mut all = vec![kernel.clone(), busybox.clone()];
    all.extend_from_slice(pkgs);
    let paths = debs::download(apt, &all, &debs_dir)?;
    debs::extract(&paths[0], &ktree)?;
    debs::extract(&paths[1], &bbtree)?;

    // Root file system: every package, recording which executables it ships.
    progress(arch, "dpkg -x the root file system packages");
    let mut exes = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Pkg>> = BTreeMap::new();
    for (p, deb) in pkgs.iter().zip(&paths[2..]) {
        debs::extract(deb, &root)?;
        let group = packages::nix_name(&p.name).to_string();
        for f in layout::deb_files(deb)? {
            if let Some((_, exe)) = layout::in_bin_dir(&f) {
                let g = packages::exe_group(&p.name, exe).unwrap_or(&group);
                if g != group {
                    groups.entry(g.to_string()).or_default().push(p);
                }
                exes.push(layout::Exe {
                    group: g.to_string(),
                    path: f,
                });
            }
        }
        groups.entry(group).or_default().push(p);
    }

    // Store directories: one per nixpkgs package.
    let mut dirs: BTreeMap<String, String> = BTreeMap::new();
    for (g, members) in &groups {
        let primary = members
            .iter()
            .find(|p| p.name == *g)
            .copied()
            .unwrap_or(members[0]);
        let mut parts: Vec<String> = vec![g.clone()];
        parts.extend(
            members
                .iter()
                .map(|p| format!("{} {} {}", p.name, p.version, p.sha256)),
        );
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        dirs.insert(
            g.clone(),
            format!(
                "nix/store/{}-{g}-{}",
                layout::store_hash(&refs),
                upstream(&primary.version)
            ),
        );
    }
    // No Nix in this double: an empty store package keeps PATH's shape.
    dirs.insert(
        "nix".into(),
        format!(
            "nix/store/{}-nix-contract-double",
            layout::store_hash(&["nix", key])
        ),
    );
    progress(arch, "moving executables into /nix/store (NixOS layout)");
    let mut store = layout::relocate(&root, &exes, &dirs)?;
    let bash = store
        .find("bash")
        .cloned()
        .context("bash was not relocated")?;
    let env = store
        .find("env")
        .cloned()
        .context("env was not relocated")?;
    // nixpkgs' bash has bin/sh -> bash (its postInstall); /bin/sh is that sh.
    let bash_dir = store.groups.get("bash").context("no bash store package")?;
    symlink(
        "bash",
        &root.join(bash_dir.trim_start_matches('/')).join("bin/sh"),
    )?;
    let sh = format!("{bash_dir}/bin/sh");
    // nixpkgs' gawk has bin/awk (Debian makes it an alternative in postinst).
    if let Some(gawk) = store.groups.get("gawk") {
        symlink(
            "gawk",
            &root.join(gawk.trim_start_matches('/')).join("bin/awk"),
        )?;
    }
    // nixpkgs' which has bin/which (Debian names it in an alternative).
    if let Some(which) = store.groups.get("which") {
        symlink(
            "which.debianutils",
            &root.join(which.trim_start_matches('/')).join("bin/which"),
        )?;
    }
    // Before fhs_links: links still inside the FHS bin dirs are re-pointed
    // too, then those dirs go.
    let relinked = layout::repoint_links(&root, &store)?;
    layout::fhs_links(&root, &sh, &env)?;
    let n = layout::rewrite_tree(
        &root,
        &[
            "lib/systemd/system",
            "usr/lib/systemd/system",
            "lib/udev/rules.d",
            "usr/lib/udev/rules.d",
            "usr/share/dbus-1",
        ],
        &store,
    )?;
    progress(
        arch,
        &format!("rewrote FHS paths in {n} unit/rule files, re-pointed {relinked} symlinks"),
    );

    // Placeholders: store paths of packages and of the guest's scripts.
    let mut vars: BTreeMap<String, String> = store.groups.clone();
    for s in files::sources() {
        if let files::Place::Script(name) = s.place {
            let dir = format!(
                "/nix/store/{}-{name}",
                layout::store_hash(&[name, s.content])
            );
            vars.insert(name.to_string(), dir.clone());
            store.groups.insert(name.to_string(), dir);
        }
    }
    // Every store package's bin, for the guest's own scripts (the doubles
    // of nixos-rebuild, the activation, the metadata fetch): they may use
    // tools NixOS does not have (jq), which never reach a PATH the
    // template's scripts see.
    let all: Vec<String> = store.groups.keys().cloned().collect();
    let all_path = format!(
        "/nix/store/{}-contract-double-path",
        layout::store_hash(&all.iter().map(String::as_str).collect::<Vec<_>>())
    );
    vars.insert("all-path".into(), all_path.clone());
    // system-path: the base /run/current-system/sw, only what NixOS puts
    // there by default (nixos/modules/config/system-path.nix corePackages
    // and defaultPackages, plus the packages the AMI's modules add).
    let base = base_packages(&store.groups)?;
    let system_path = system_path_name(&base);
    vars.insert("system-path".into(), system_path.clone());
    // Package name -> store directory (`pkgs.<name>` for the doubles).
    for (g, dir) in &store.groups {
        symlink(dir, &root.join("etc/contract/packages").join(g))?;
    }
    let path_of = |pkgs: &[&str], sub: &str| -> anyhow::Result<Vec<String>> {
        pkgs.iter()
            .map(|p| {
                vars.get(*p)
                    .map(|d| format!("{d}/{sub}"))
                    .with_context(|| format!("no store package {p} for a PATH"))
            })
            .collect()
    };
    let mut unit_path = path_of(SERVICE_PATH, "bin")?;
    unit_path.extend(path_of(SERVICE_PATH, "sbin")?);
    let unit_path = unit_path.join(":");
    let amazon_path = path_of(AMAZON_INIT_PATH, "bin")?.join(":");
    vars.insert("unit-path".into(), unit_path);
    vars.insert("amazon-init-path".into(), amazon_path);
    vars.insert("nix-system".into(), nix_system(arch));

    progress(arch, "guest files, units, system profile");
    for s in files::sources() {
        let (rel, mode) = match s.place {
            files::Place::Script(name) => (
                format!("{}/bin/{name}", vars[name].trim_start_matches('/')),
                0o555,
            ),
            files::Place::Path(p, mode) => (p.to_string(), mode),
        };
        let text = layout::substitute(&rel, s.content, &vars)?;
        write_file(&root, &rel, mode, &text)?;
    }
    // The bins of the paths named above, now that every script is in place.
    link_bins(&root, &store.groups, &all, &all_path)?;
    link_bins(&root, &store.groups, &base, &system_path)?;
    // The system paths of the configurations the image ships declarations
    // for (bootstrap, fixture flakes), made here as Nix would have them in
    // the store already: the nixos-rebuild double finds them by name and
    // only builds one for a package set it has never seen.
    for extra in shipped_system_packages()? {
        let mut set = base.clone();
        set.extend(extra);
        set.sort();
        set.dedup();
        let sp = system_path_name(&set);
        if !root.join(sp.trim_start_matches('/')).exists() {
            link_bins(&root, &store.groups, &set, &sp)?;
        }
    }
    // The setuid wrappers' programs under their wrapper names, WITHOUT
    // setuid bits (the store has none): the activation copies them into
    // /run/wrappers in one go and sets the modes /etc/contract/wrappers names.
    let wrappers = std::fs::read_to_string(root.join("etc/contract/wrappers"))?;
    for line in wrappers.lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(src)) = (f.next(), f.next()) else {
            continue;
        };
        let dst = root.join("etc/contract/wrappers.d").join(name);
        std::fs::create_dir_all(dst.parent().unwrap())?;
        std::fs::copy(root.join(src.trim_start_matches('/')), &dst)
            .with_context(|| format!("wrapper {name} from {src}"))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))?;
    }
    write_file(
        &root,
        "etc/contract/base-packages",
        0o644,
        &format!("{}\n", base.join("\n")),
    )?;
    // Generation 1: the AMI's own configuration, laid out as the
    // nixos-rebuild double lays out the ones it builds.
    let ami = serde_json::json!({
        "name": "ami",
        "description": "The AMI's own configuration (amazon-image.nix): no normal users, sudo for wheel with a password, no extra file systems.",
        "wheelNeedsPassword": true,
    });
    let gen = format!(
        "/nix/store/{}-nixos-system-contract-ami",
        layout::store_hash(&["ami", &system_path])
    );
    let rel = gen.trim_start_matches('/').to_string();
    write_file(
        &root,
        &format!("{rel}/declares.json"),
        0o444,
        &serde_json::to_string_pretty(&ami)?,
    )?;
    write_file(&root, &format!("{rel}/plan.sh"), 0o444, AMI_PLAN)?;
    write_file(&root, &format!("{rel}/etc/fstab"), 0o444, FSTAB_EMPTY)?;
    write_file(
        &root,
        &format!("{rel}/nixos-version"),
        0o444,
        "26.05.contract-double\n",
    )?;
    symlink(&system_path, &root.join(&rel).join("sw"))?;
    let act = &vars["contract-activate"];
    write_file(
        &root,
        &format!("{rel}/activate"),
        0o555,
        &format!(
            "#!{bash}\nexport systemConfig={gen}\nexec {act}/bin/contract-activate activate \"$systemConfig\" \"$@\"\n"
        ),
    )?;
    write_file(
        &root,
        &format!("{rel}/bin/switch-to-configuration"),
        0o555,
        &format!("#!{bash}\nexec {act}/bin/contract-activate stc {gen} \"$@\"\n"),
    )?;
    symlink(&gen, &root.join("nix/var/nix/profiles/system-1-link"))?;
    symlink("system-1-link", &root.join("nix/var/nix/profiles/system"))?;
    // The boot loader's default entry (see units/contract-activation.service).
    symlink(&gen, &root.join("boot/contract-default"))?;
    // No FHS ELF interpreter, as on NixOS: every dynamically linked program
    // names the loader in the store, so a binary built for an FHS system
    // (a downloaded agent) fails here as it does on NixOS.
    let libc = store
        .groups
        .get("libc6")
        .context("no libc6 store package for the ELF interpreter")?
        .clone();
    let n = layout::retarget_interpreter(&root, arch, &libc)?;
    progress(
        arch,
        &format!("ELF interpreter moved into {libc}: {n} programs re-pointed"),
    );

    // systemd wiring: enabled units, masks, generators.
    for (unit, target) in files::ENABLE {
        let own = root.join("etc/systemd/system").join(unit);
        let from = if own.exists() {
            format!("/etc/systemd/system/{unit}")
        } else {
            format!("/lib/systemd/system/{unit}")
        };
        symlink(
            &from,
            &root
                .join("etc/systemd/system")
                .join(format!("{target}.wants"))
                .join(unit),
        )?;
    }
    for unit in files::MASK {
        symlink("/dev/null", &root.join("etc/systemd/system").join(unit))?;
    }
    for g in ["systemd-fstab-generator", "systemd-getty-generator"] {
        symlink(
            "/dev/null",
            &root.join("etc/systemd/system-generators").join(g),
        )?;
    }
    // Debian's own enablement links (none: no maintainer scripts ran) and
    // its ssh.service stay unused; the guest's sshd.service replaces it.
    for (rel, mode) in [
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("mnt", 0o755),
        ("var/empty", 0o555),
        ("var/log", 0o755),
        ("var/lib/nixos", 0o755),
        ("etc/nixos", 0o755),
        ("etc/sudoers.d", 0o750),
        ("nix/var/nix/profiles/per-user/root", 0o755),
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(&p)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    for d in [
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ] {
        let _ = std::fs::remove_dir_all(root.join(d));
    }
    // iproute2's tc plugins (q_atm.so needs libatm, a Recommends): no tc here.
    for multiarch in ["x86_64-linux-gnu", "aarch64-linux-gnu"] {
        let _ = std::fs::remove_dir_all(root.join("usr/lib").join(multiarch).join("tc"));
    }
    write_file(&root, "etc/machine-id", 0o444, "")?;
    write_file(&root, "etc/hostname", 0o644, "nixos\n")?;
    write_file(
        &root,
        "etc/hosts",
        0o644,
        "127.0.0.1 localhost\n::1 localhost\n127.0.0.2 nixos\n",
    )?;
    write_file(&root, "etc/resolv.conf", 0o644, "nameserver 169.0.0.3\n")?;
    write_file(&root, "etc/fstab", 0o644, "")?;
    write_file(
        &root,
        "etc/sudoers",
        0o440,
        "root ALL=(ALL:ALL) SETENV: ALL\n%wheel ALL=(ALL:ALL) SETENV: ALL\n",
    )?;
    symlink("/proc/self/mounts", &root.join("etc/mtab"))?;
    // NixOS's store and root file system carry no setuid/setgid files (Debian's
    // ssh-keysign, dbus-daemon-launch-helper…): setuid is /run/wrappers' job.
    strip_setuid(&root)?;
    assemble::check_libraries(&root)?;

    // Kernel and initramfs ([`kmod`]).
    let release = kernel
        .name
        .strip_prefix("linux-image-")
        .context("kernel package is not linux-image-*")?
        .to_string();
    std::fs::copy(
        ktree.join("boot").join(format!("vmlinuz-{release}")),
        out.join("vmlinuz"),
    )
    .context("copy vmlinuz")?;
    let mod_dir = ktree.join("lib/modules").join(&release);
    let kfiles = kmod::index(&mod_dir.join("kernel"))?;
    let builtin: HashSet<String> = kmod::builtin(&mod_dir);
    let deps_of = |p: &Path| {
        kmod::depends(&kmod::read_module(p)?).with_context(|| format!("modinfo of {}", p.display()))
    };
    let order = kmod::load_order(&kmod::wanted(arch), &kfiles, &builtin, &deps_of)?;
    std::fs::create_dir_all(initramfs.join("bin"))?;
    std::fs::create_dir_all(initramfs.join("lib/modules"))?;
    std::fs::copy(bbtree.join("bin/busybox"), initramfs.join("bin/busybox"))
        .context("busybox-static has no /bin/busybox")?;
    let mut list = String::new();
    for m in &order {
        std::fs::write(
            initramfs.join(format!("lib/modules/{m}.ko")),
            kmod::read_module(&kfiles[m])?,
        )?;
        list.push_str(&format!("{m}.ko\n"));
    }
    std::fs::write(initramfs.join("modules.order"), &list)?;
    write_file(&initramfs, "init", 0o755, files::INITRAMFS_INIT)?;
    assemble::cpio_gz(&initramfs, &out.join("initrd.img"))?;

    progress(arch, "mkfs.ext4 -d (root disk)");
    mkfs(&root, &out.join("root.raw"))?;
    std::fs::remove_dir_all(&work)?;
    let manifest = serde_json::json!({
        "kind": "contract",
        "note": "named double of the NixOS AMI: Debian packages + systemd keeping NixOS's user-data contract; not NixOS",
        "arch": arch.as_str(),
        "key": key,
        "kernel": { "package": kernel.name, "version": kernel.version, "release": release },
        "append": append(arch),
        "modules": order,
        "store": store.groups,
        "system_path": system_path,
        "base_packages": base,
        "packages": pkgs.iter().map(|p| format!("{}:{}={}", p.name, p.arch, p.version)).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
    Ok(())
}

/// Drops the setuid and setgid bits of every regular file under `root`.
fn strip_setuid(root: &Path) -> anyhow::Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let mode = e.metadata()?.permissions().mode();
                if mode & 0o6000 != 0 {
                    std::fs::set_permissions(
                        e.path(),
                        std::fs::Permissions::from_mode(mode & 0o1777),
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn mkfs(tree: &Path, image: &Path) -> anyhow::Result<()> {
    let mkfs = crate::tools::find("mkfs.ext4")?;
    let out = std::process::Command::new(mkfs)
        .args(["-q", "-F", "-t", "ext4", "-L", ROOT_LABEL, "-d"])
        .arg(tree)
        .arg(image)
        .arg(format!("{ROOT_MIB}M"))
        .output()
        .context("cannot run mkfs.ext4")?;
    anyhow::ensure!(
        out.status.success(),
        "mkfs.ext4 -d {} {} failed ({}):\n{}",
        tree.display(),
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream("1:9.1-1"), "9.1");
        assert_eq!(upstream("1.9.13p3-1+deb12u1"), "1.9.13p3");
        assert_eq!(upstream("252.38-1~deb12u1"), "252.38");
    }

    #[test]
    fn every_placeholder_in_guest_files_is_known_at_build_time() {
        // The names the build defines beyond the package groups.
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for n in [
            "system-path",
            "all-path",
            "unit-path",
            "amazon-init-path",
            "nix-system",
            "bash",
            "coreutils",
            "gnused",
            "curl",
            "systemd",
            "openssh",
            "sudo",
            "util-linux",
        ] {
            vars.insert(n.into(), format!("/nix/store/x-{n}"));
        }
        for s in files::sources() {
            if let files::Place::Script(n) = s.place {
                vars.insert(n.into(), format!("/nix/store/x-{n}"));
            }
        }
        for s in files::sources() {
            layout::substitute(&format!("{:?}", s.place), s.content, &vars).unwrap();
        }
    }

    #[test]
    fn amazon_init_path_matches_nixpkgs_order() {
        assert_eq!(AMAZON_INIT_PATH.first(), Some(&"nix"));
        assert_eq!(AMAZON_INIT_PATH.last(), Some(&"nixos-rebuild"));
        assert!(!AMAZON_INIT_PATH.contains(&"curl"));
        assert!(!SERVICE_PATH.contains(&"bash"));
        let unit = files::sources()
            .into_iter()
            .find(|s| {
                s.place == files::Place::Path("etc/systemd/system/amazon-init.service", 0o644)
            })
            .unwrap();
        assert!(unit.content.contains("Environment=PATH=@unit-path@"));
        assert!(unit.content.contains("Requires=network-online.target"));
    }

    /// The declaration data must describe the template's CURRENT
    /// bootstrap.nix: when bootstrap.nix changes, this fails until
    /// harness/contract-guest/bootstrap.declares.json says what it declares.
    /// The guest's `/etc/contract/bootstrap.declares.json`, as shipped.
    fn bootstrap_declares() -> serde_json::Value {
        let sources = files::sources();
        let file = sources
            .iter()
            .find(|s| s.place == files::Place::Path("etc/contract/bootstrap.declares.json", 0o644))
            .expect("bootstrap.declares.json is among the guest files");
        serde_json::from_str(file.content).expect("bootstrap.declares.json is JSON")
    }

    #[test]
    fn bootstrap_declarations_describe_the_templates_bootstrap_nix() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let nix = std::fs::read(repo.join("templates/modules/bootstrap/bootstrap.nix")).unwrap();
        let sum = hex::encode(Sha256::digest(&nix));
        let data = bootstrap_declares();
        let known: Vec<&str> = data["bootstrap_nix_sha256"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            known.contains(&sum.as_str()),
            "templates/modules/bootstrap/bootstrap.nix (sha256 {sum}) is not described by \
             harness/contract-guest/bootstrap.declares.json (describes {known:?}): update its \
             `declares`/`assertions` to what the new bootstrap.nix declares, then add the sum"
        );
    }

    /// Every file the bootstrap switch evaluates is pinned: the template's
    /// configuration.nix (what the user-data writes next to bootstrap.nix)
    /// must be one the declaration data describes.
    #[test]
    fn bootstrap_declarations_pin_the_templates_configuration_nix() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let nix =
            std::fs::read(repo.join("templates/modules/bootstrap/configuration.nix")).unwrap();
        let sum = hex::encode(Sha256::digest(&nix));
        let data = bootstrap_declares();
        let known: Vec<&str> = data["configuration_nix_sha256"]
            .as_array()
            .expect("bootstrap.declares.json pins configuration_nix_sha256")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(
            known.contains(&sum.as_str()),
            "templates/modules/bootstrap/configuration.nix (sha256 {sum}) is not pinned by \
             harness/contract-guest/bootstrap.declares.json's configuration_nix_sha256 ({known:?}): \
             check what it imports and sets against `declares`, then add the sum"
        );
    }

    #[test]
    fn system_path_names_match_the_doubles() {
        // The nixos-rebuild double: printf '%s\n' sorted | sha256sum, e->f, 32.
        let a = system_path_name(&["git".into(), "bash".into()]);
        assert_eq!(
            a,
            system_path_name(&["bash".into(), "git".into(), "git".into()])
        );
        assert!(
            a.starts_with("/nix/store/") && a.ends_with("-system-path"),
            "{a}"
        );
        let hash = &a["/nix/store/".len()..a.len() - "-system-path".len()];
        assert_eq!(hash.len(), 32);
        assert!(!hash.contains('e'));
        let hex = hex::encode(Sha256::digest(b"bash\ngit\n")).replace('e', "f");
        assert_eq!(hash, &hex[..32]);
    }

    #[test]
    fn base_system_path_is_nixos_s() {
        assert!(!NIXOS_BASE_SW.contains(&"jq"));
        assert!(!NIXOS_BASE_SW.contains(&"git"), "the bootstrap adds git");
        for p in [
            "coreutils",
            "curl",
            "util-linux",
            "systemd",
            "sudo",
            "glibc",
        ] {
            assert!(NIXOS_BASE_SW.contains(&p), "{p}");
        }
        assert!(AMI_PLAN.contains("WHEEL_NOPASSWD=0"));
    }

    /// One of the nixos-rebuild double's jq programs (`read -r -d '' NAME <<'JQ'`).
    fn double_jq(name: &str) -> String {
        let src = files::sources()
            .into_iter()
            .find(|s| s.place == files::Place::Script("nixos-rebuild"))
            .unwrap()
            .content;
        let start = src
            .find(&format!("read -r -d '' {name} <<'JQ' || true\n"))
            .unwrap_or_else(|| panic!("no jq program {name} in the nixos-rebuild double"));
        let body = &src[start..];
        let body = &body[body.find('\n').unwrap() + 1..];
        body[..body.find("\nJQ\n").unwrap()].to_string()
    }

    fn jq(args: &[&str], prog: &str, input: &Path) -> String {
        let out =
            std::process::Command::new(crate::tools::find("jq").expect("jq (ci/setup-debian.sh)"))
                .arg("-r")
                .args(args)
                .arg(prog)
                .arg(input)
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "jq: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The double's evaluation of the bootstrap on the host: the pinned
    /// files give the declarations with the agent user; another
    /// configuration.nix or bootstrap.nix, or a refused user, does not.
    #[test]
    fn the_doubles_bootstrap_evaluation() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sum = |f: &str| hex::encode(Sha256::digest(std::fs::read(repo.join(f)).unwrap()));
        let conf = sum("templates/modules/bootstrap/configuration.nix");
        let boot = sum("templates/modules/bootstrap/bootstrap.nix");
        let data = repo.join("harness/contract-guest/bootstrap.declares.json");
        let prog = double_jq("EVAL_BOOTSTRAP_JQ");
        let d = tempfile::tempdir().unwrap();
        let params = d.path().join("params.json");
        let eval = |user: &str, conf: &str, boot: &str| {
            std::fs::write(&params, format!("{{\"agent_user\":\"{user}\"}}")).unwrap();
            jq(
                &[
                    "--arg",
                    "conf",
                    conf,
                    "--arg",
                    "boot",
                    boot,
                    "--slurpfile",
                    "params",
                    params.to_str().unwrap(),
                ],
                &prog,
                &data,
            )
        };
        let ok = eval("dev", &conf, &boot);
        assert!(ok.starts_with("D\t"), "{ok}");
        let decl: serde_json::Value = serde_json::from_str(ok[2..].trim()).unwrap();
        assert_eq!(decl["users"]["dev"]["extraGroups"][0], "wheel", "{decl}");
        assert_eq!(decl["fileSystems"]["/home"]["device"], "/dev/xvdb");
        let e = eval("dev", "0000", &boot);
        assert!(
            e.starts_with("E\t") && e.contains("configuration.nix"),
            "{e}"
        );
        let e = eval("dev", &conf, "0000");
        assert!(e.starts_with("E\t") && e.contains("bootstrap.nix"), "{e}");
        let a = eval("root", &conf, &boot);
        assert!(
            a.starts_with("A\t") && a.contains("root is reserved"),
            "{a}"
        );
        let a = eval("Bad!", &conf, &boot);
        assert!(a.starts_with("A\t") && a.contains("must match"), "{a}");
    }

    /// The double's plan (bash) for a fixture flake's declarations.
    #[test]
    fn the_doubles_plan_for_a_fixture() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let plan = jq(
            &[],
            &double_jq("PLAN_JQ"),
            &repo.join("harness/contract-guest/fixtures/good/declares.json"),
        );
        for line in [
            "NAME='good'",
            "WHEEL_NOPASSWD=1",
            "USERS=('coder' 'dev')",
            "U_HOME['dev']='/home/dev'",
            "U_SHELL['coder']='/run/current-system/sw/bin/bash'",
            "U_CREATE['coder']=1",
            "U_EXTRA['dev']='wheel'",
            "FILESYSTEMS=('/home')",
            "F_DEV['/home']='/dev/xvdb'",
            "F_OPTS['/home']='defaults,x-systemd.makefs'",
        ] {
            assert!(plan.lines().any(|l| l == line), "no `{line}` in:\n{plan}");
        }
        // The AMI's generation has the same shape (same variables).
        let vars = |p: &str| -> Vec<String> {
            let mut v: Vec<String> = p
                .lines()
                .filter(|l| !l.contains('['))
                .filter_map(|l| l.split('=').next().map(str::to_string))
                .collect();
            v.sort();
            v
        };
        assert_eq!(vars(AMI_PLAN), vars(&plan));
    }

    #[test]
    fn bootstrap_declarations_refuse_exactly_the_reserved_users() {
        let data = bootstrap_declares();
        let refused: Vec<&str> = data["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "not_in")
            .flat_map(|a| a["values"].as_array().unwrap().iter())
            .filter_map(|v| v.as_str())
            .collect();
        let reserved: Vec<&str> = crate::lint::agent_user::RESERVED.to_vec();
        assert_eq!(
            refused, reserved,
            "harness/contract-guest/bootstrap.declares.json's not_in assertion must list \
             exactly harness::lint::agent_user::RESERVED (bootstrap.nix's reservedUsers)"
        );
    }

    #[test]
    fn the_x86_64_guest_skips_the_boot_timer_count() {
        // Without it a guest whose QEMU thread a loaded host starves at boot
        // panics: "IO-APIC + timer doesn't work!" (see `append`).
        assert!(append(Arch::X86_64)
            .split(' ')
            .any(|p| p == "no_timer_check"));
        // An x86-only parameter; on arm64 it would reach init as an argument.
        assert!(!append(Arch::Aarch64).contains("no_timer_check"));
    }

    #[test]
    fn cache_key_tracks_inputs() {
        let p = |n: &str, v: &str| Pkg {
            name: n.into(),
            version: v.into(),
            arch: "amd64".into(),
            sha256: "00".into(),
        };
        let k = p("linux-image-6.1.0-1-cloud-amd64", "6.1");
        let b = p("busybox-static", "1.35");
        let base = vec![p("sudo", "1.9")];
        let a = cache_key(Arch::X86_64, &k, &b, &base);
        assert_eq!(a, cache_key(Arch::X86_64, &k, &b, &base));
        assert_ne!(a, cache_key(Arch::Aarch64, &k, &b, &base));
        assert_ne!(a, cache_key(Arch::X86_64, &k, &b, &[p("sudo", "1.10")]));
    }
}
