//! Builds the real fixture guest image for both arches from Debian packages
//! (needs apt with the arm64 architecture added) and checks its files, the
//! cache hit on a second build, and the manifest.

use harness::image::{fixture, BootMethod, ImageKind};
use harness::variant::Arch;

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
