//! Timeouts from what this machine measures: every boot's time from QEMU's
//! start to the probe shell's ready line, over the same image's boot time
//! on the reference machine ([`reference`]), is the guest's *pace*; probe
//! commands and long waits on that guest are scaled by it (never below 1),
//! instead of constants tuned on a faster run. A slow, shared or
//! emulated-on-emulated machine thus gets proportionally longer waits, and
//! the error says by how much.
//!
//! `HARNESS_TIMEOUT_SCALE=<factor>` forces the factor; explicit timeout
//! variables (`HARNESS_CONTRACT_TIMEOUT`, …) are used as given.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::image::ImageKind;
use crate::template::variant::Arch;

/// Highest factor derived from a boot (a boot that slow is reported, not
/// waited out).
pub const MAX: f64 = 8.0;

/// Boot to probe-ready on the reference: this 2-core machine under TCG,
/// one guest at a time, nothing else running (docs/contract-run.md).
/// aarch64 was 45 s until the guest's CPU got `pauth-impdef=on`
/// (`argv.rs`); since then `harness bench vm --arch aarch64` measures 10–12 s.
pub fn reference(kind: ImageKind, arch: Arch) -> Option<Duration> {
    let s = match (kind, arch) {
        (ImageKind::Contract, Arch::X86_64) => 16.0,
        (ImageKind::Contract, Arch::Aarch64) => 12.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(s))
}

/// The factor for a boot of `measured` against `reference` (`forced`:
/// `HARNESS_TIMEOUT_SCALE`).
pub fn factor(measured: Duration, reference: Option<Duration>, forced: Option<&str>) -> f64 {
    if let Some(f) = forced.and_then(|s| s.trim().parse::<f64>().ok()) {
        if f.is_finite() && f > 0.0 {
            return f;
        }
    }
    match reference {
        Some(r) if !r.is_zero() => (measured.as_secs_f64() / r.as_secs_f64()).clamp(1.0, MAX),
        _ => 1.0,
    }
}

fn last() -> &'static AtomicU64 {
    static L: AtomicU64 = AtomicU64::new(0);
    &L
}

/// Record the factor of a boot that just finished.
pub fn record(f: f64) {
    last().store(f.to_bits(), Ordering::Relaxed);
}

/// The factor of this process's latest boot (1 before the first), for
/// waits that start before their guest boots (a boot's own timeout, a
/// whole contract start).
pub fn current() -> f64 {
    if let Some(f) = std::env::var("HARNESS_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f > 0.0)
    {
        return f;
    }
    match f64::from_bits(last().load(Ordering::Relaxed)) {
        f if f >= 1.0 => f,
        _ => 1.0,
    }
}

/// `HARNESS_<name>` seconds as given, or `default` × [`current`].
pub fn timeout_from_env(name: &str, default: Duration) -> Duration {
    match std::env::var(name)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(s) => Duration::from_secs(s),
        None => default.mul_f64(current()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factor_is_measured_over_reference_clamped_and_can_be_forced() {
        let r = Some(Duration::from_secs(16));
        assert_eq!(factor(Duration::from_secs(32), r, None), 2.0);
        assert_eq!(factor(Duration::from_secs(8), r, None), 1.0);
        assert_eq!(factor(Duration::from_secs(1600), r, None), MAX);
        assert_eq!(factor(Duration::from_secs(32), None, None), 1.0);
        assert_eq!(factor(Duration::from_secs(32), r, Some("3")), 3.0);
        assert_eq!(factor(Duration::from_secs(32), r, Some("x")), 2.0);
        assert!(reference(ImageKind::Contract, Arch::Aarch64).is_some());
        assert!(reference(ImageKind::Nixos, Arch::X86_64).is_none());
    }
}
