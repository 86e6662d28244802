//! Builds the real fixture guest image for both arches from Debian bookworm
//! packages through the private apt root (no host `dpkg --add-architecture`
//! needed) and checks its files, the cache hit on a second build, and the
//! manifest; and builds it again from a sources list unlike the host's,
//! leaving the host's apt state untouched.

use harness::image::{fixture, BootMethod, ImageKind};
use harness::template::variant::Arch;

fn cache_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("fixture-images")
}

#[test]
fn builds_both_arches_and_hits_the_cache() {
    for arch in Arch::ALL {
        let img = fixture::build_in(&cache_dir(), arch).expect("fixture build");
        assert_eq!(img.arch, arch);
        assert_eq!(img.kind, ImageKind::Fixture);
        assert_eq!(img.base_format, "raw");
        let BootMethod::Direct {
            kernel,
            initrd,
            append,
        } = &img.boot
        else {
            panic!("fixture must boot directly: {:?}", img.boot);
        };
        for f in [kernel, initrd, &img.base] {
            let len = std::fs::metadata(f)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .len();
            assert!(len > 100_000, "{} is only {len} bytes", f.display());
        }
        assert!(append.contains(if arch == Arch::X86_64 {
            "ttyS0"
        } else {
            "ttyAMA0"
        }));
        // ext4 superblock magic 0xEF53 at offset 1080.
        let mut sb = [0u8; 2];
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(&img.base).unwrap();
        f.seek(std::io::SeekFrom::Start(1080)).unwrap();
        f.read_exact(&mut sb).unwrap();
        assert_eq!(sb, [0x53, 0xEF], "root.raw is not ext4");
        // initrd is gzip.
        let head = std::fs::read(initrd).unwrap();
        assert_eq!(&head[..2], &[0x1f, 0x8b], "initrd is not gzip");
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(img.base.with_file_name("manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["arch"], arch.as_str());
        let modules: Vec<&str> = manifest["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for m in ["virtio_pci", "virtio_blk", "virtio_net", "virtio_console"] {
            assert!(modules.contains(&m), "{m} not in {modules:?}");
        }
        let pos = |m: &str| modules.iter().position(|x| *x == m).unwrap();
        assert!(pos("virtio_ring") < pos("virtio_pci") && pos("net_failover") < pos("virtio_net"));
        // Second build: same inputs, same directory, no rebuild.
        let again = fixture::build_in(&cache_dir(), arch).unwrap();
        assert_eq!(again.base, img.base);
    }
}

/// Names, sizes and mtimes of the files under `dir` (the host's apt state).
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    if let Ok(m) = std::fs::metadata(dir) {
        if m.is_file() {
            out.push((dir.to_path_buf(), m.len(), m.modified().unwrap()));
        }
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn builds_from_a_sources_list_unlike_the_hosts_and_leaves_host_apt_alone() {
    use harness::image::apt_root::{AptRoot, Mirror, ALL_ARCHS};
    let host = Mirror::from_env_or_host();
    // One-line format (this machine uses deb822), security listed first, the
    // archive under the `stable` alias, and an unrelated non-Debian source:
    // only the Debian URIs may be taken, and the suites are always bookworm.
    let etc = tempfile::tempdir().unwrap();
    let mut list = String::from("deb https://deb.nodesource.com/node_20.x nodistro main\n");
    if let Some(sec) = &host.security {
        list.push_str(&format!("deb [arch=amd64] {sec} stable-security main\n"));
    }
    list.push_str(&format!("deb {} stable main contrib\n", host.archive));
    std::fs::write(etc.path().join("sources.list"), &list).unwrap();
    let mirror = Mirror::from_host_etc(etc.path()).expect("a Debian mirror in the one-line list");
    assert_eq!(mirror.archive, host.archive.trim_end_matches('/'));

    let before: Vec<_> = ["/etc/apt", "/var/lib/apt/lists", "/var/lib/dpkg/arch"]
        .iter()
        .map(|d| snapshot(std::path::Path::new(d)))
        .collect();
    let work = tempfile::tempdir().unwrap();
    let apt = AptRoot::new(&work.path().join("apt-root"), mirror, ALL_ARCHS).unwrap();
    let sources = std::fs::read_to_string(apt.dir().join("etc/sources.list")).unwrap();
    assert!(
        sources.contains(" bookworm main") && !sources.contains("nodesource"),
        "{sources}"
    );
    let img = fixture::build_with(&work.path().join("images"), &apt, Arch::X86_64)
        .expect("fixture build through a private apt root");
    assert!(img.base.starts_with(work.path()));
    assert!(std::fs::metadata(&img.base).unwrap().len() > 100_000);
    let after: Vec<_> = ["/etc/apt", "/var/lib/apt/lists", "/var/lib/dpkg/arch"]
        .iter()
        .map(|d| snapshot(std::path::Path::new(d)))
        .collect();
    assert_eq!(before, after, "the build touched the host's apt state");
}
