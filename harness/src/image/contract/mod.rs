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
//!   (`ImageKind::Contract`, direct kernel boot like the fixture).
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

use super::fixture::packages::{self as debs, Pkg};
use super::fixture::{assemble, kmod};
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
/// Not part of the AMI's base system-path: the bootstrap adds git
/// (`environment.systemPackages`), so it appears in sw only after a switch.
const NOT_IN_BASE_SW: &[&str] = &["git", "nix"];

/// Kernel command line.
pub fn append(arch: Arch) -> String {
    let console = match arch {
        Arch::X86_64 => "ttyS0",
        Arch::Aarch64 => "ttyAMA0",
    };
    format!("console={console} root=LABEL={ROOT_LABEL} rw panic=-1 systemd.show_status=1")
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
    // The same private apt root as the fixture guest (`<cache>/../apt-root`):
    // never the host's apt state.
    let apt = crate::image::apt_root::AptRoot::shared(cache.parent().unwrap_or(cache))?;
    debs::check_host()?;
    crate::tools::find("mkfs.ext4")?;
    crate::tools::find("cpio")?;
    progress(arch, "resolving Debian packages (apt-get -s, empty status)");
    apt.ensure_updated()?;
    let kernel_name = debs::resolve_kernel_package(&apt, arch)?;
    let wanted: Vec<String> = packages::ROOTFS_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names = packages::closure(&apt, &wanted, arch)?;
    let pkgs = debs::resolve(&apt, &names, arch)?;
    let mut extra = debs::resolve(
        &apt,
        &[kernel_name.clone(), "busybox-static".to_string()],
        arch,
    )?;
    let bpos = extra
        .iter()
        .position(|p| p.name == "busybox-static")
        .context("busybox-static vanished from the resolution")?;
    let busybox = extra.remove(bpos);
    let kernel = extra.pop().context("kernel package vanished")?;
    let key = cache_key(arch, &kernel, &busybox, &pkgs);
    super::build_once(
        &cache.join(arch.as_str()),
        &key,
        |msg| progress(arch, msg),
        |dir| cached(dir, arch, &kernel, &key),
        |out| build_into(out, &apt, arch, &kernel, &busybox, &pkgs, &key),
    )
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
            if layout::in_bin_dir(&f).is_some() {
                exes.push(layout::Exe {
                    group: group.clone(),
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
    // system-path: the base /run/current-system/sw.
    let mut base: Vec<String> = store
        .groups
        .keys()
        .filter(|g| !NOT_IN_BASE_SW.contains(&g.as_str()))
        .filter(|g| {
            // Internal scripts of the guest are not system packages.
            !matches!(
                g.as_str(),
                "contract-activate"
                    | "ec2-metadata-fetcher"
                    | "apply-ec2-data"
                    | "amazon-init"
                    | "probe-shell"
            )
        })
        .cloned()
        .collect();
    base.sort();
    let base_refs: Vec<&str> = base.iter().map(String::as_str).collect();
    let system_path = format!("/nix/store/{}-system-path", layout::store_hash(&base_refs));
    vars.insert("system-path".into(), system_path.clone());
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
    // Store package list for the nixos-rebuild double and the activation.
    let store_json: BTreeMap<&String, &String> = store.groups.iter().collect();
    write_file(
        &root,
        "etc/contract/store-paths.json",
        0o644,
        &serde_json::to_string_pretty(&store_json)?,
    )?;
    write_file(
        &root,
        "etc/contract/base-packages",
        0o644,
        &format!("{}\n", base.join("\n")),
    )?;
    // system-path itself.
    let sp = root.join(system_path.trim_start_matches('/')).join("bin");
    std::fs::create_dir_all(&sp)?;
    for g in &base {
        let dir = root
            .join(store.groups[g].trim_start_matches('/'))
            .join("bin");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let target = format!("{}/bin/{}", store.groups[g], n.to_string_lossy());
            symlink(&target, &sp.join(&n))?;
        }
    }
    // Generation 1: the AMI's own configuration.
    let ami = serde_json::json!({
        "name": "ami",
        "description": "The AMI's own configuration (amazon-image.nix): no normal users, sudo for wheel with a password, no extra file systems.",
        "wheelNeedsPassword": true,
    });
    let gen = format!(
        "/nix/store/{}-nixos-system-contract-ami",
        layout::store_hash(&["ami", &system_path])
    );
    let gen_dir = root.join(gen.trim_start_matches('/'));
    write_file(
        &root,
        &format!("{}/declares.json", gen.trim_start_matches('/')),
        0o444,
        &serde_json::to_string_pretty(&ami)?,
    )?;
    symlink(&system_path, &gen_dir.join("sw"))?;
    write_file(
        &root,
        &format!("{}/activate", gen.trim_start_matches('/')),
        0o555,
        &format!(
            "#!{bash}\nexport systemConfig={gen}\nexec {act}/bin/contract-activate \"$systemConfig\" \"$@\"\n",
            act = vars["contract-activate"]
        ),
    )?;
    symlink(&gen, &root.join("nix/var/nix/profiles/system-1-link"))?;
    symlink("system-1-link", &root.join("nix/var/nix/profiles/system"))?;

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

    // Kernel and initramfs (the fixture's module machinery).
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
