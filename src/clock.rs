//! Millisecond timestamps for the hot path, exact to the millisecond the system clock gives.
//!
//! Every point is stamped with the wall clock in milliseconds, and reading it (`clock_gettime`
//! through the vDSO) costs about as much as the rest of the hot path's own work. Within one
//! millisecond the answer cannot change, so a thread reads the system clock once, notes how
//! many TSC cycles are surely left before the next millisecond starts, and answers from the
//! TSC (one unserialized `rdtsc`) until then. "Surely" rests on a lower bound of the TSC's
//! rate: measured against the monotonic clock and taken 1% low, it can only make a thread
//! read the system clock early, never late. The TSC is used only where the kernel itself
//! keeps time with it (its clocksource is `tsc`: constant rate, synchronized across CPUs);
//! elsewhere, and until the rate is known, every stamp reads the system clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as MLflow's `get_current_time_millis`.
pub fn now_millis() -> i64 {
    // Reading the clock directly skips the checked subtraction and 128-bit division of
    // `SystemTime::duration_since(..).as_millis()`.
    #[cfg(unix)]
    if let Some(nanos) = clock_nanos(libc::CLOCK_REALTIME) {
        return nanos.div_euclid(NANOS_PER_MILLI);
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg_attr(not(unix), allow(dead_code))]
const NANOS_PER_MILLI: i64 = 1_000_000;

#[cfg(unix)]
fn clock_nanos(clock: libc::clockid_t) -> Option<i64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write into.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    // The fields are narrower than i64 on some targets.
    #[allow(clippy::unnecessary_cast)]
    Some(now.tv_sec as i64 * 1_000_000_000 + now.tv_nsec as i64)
}

/// One thread's stamps: the millisecond last read from the system clock, good while the TSC
/// is less than `span` cycles past `base`.
#[derive(Debug, Default)]
pub struct MillisClock {
    base: u64,
    span: u64,
    millis: i64,
}

impl MillisClock {
    #[inline]
    pub fn now(&mut self) -> i64 {
        match tsc::read() {
            Some(now) if now.wrapping_sub(self.base) < self.span => self.millis,
            now => self.read(now),
        }
    }

    #[cold]
    #[inline(never)]
    fn read(&mut self, tsc_before: Option<u64>) -> i64 {
        #[cfg(unix)]
        if let Some(nanos) = clock_nanos(libc::CLOCK_REALTIME) {
            let millis = nanos.div_euclid(NANOS_PER_MILLI);
            let left_ns = NANOS_PER_MILLI - nanos.rem_euclid(NANOS_PER_MILLI);
            // `tsc_before` was read before the clock, so the next millisecond starts at
            // least `left_ns` after it.
            if let Some(before) = tsc_before {
                let per_ms = tsc::cycles_per_milli_low();
                self.base = before;
                self.span = (left_ns as u64).saturating_mul(per_ms) / NANOS_PER_MILLI as u64;
                self.millis = millis;
            }
            return millis;
        }
        let _ = tsc_before;
        now_millis()
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tsc {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    use super::{clock_nanos, NANOS_PER_MILLI};

    /// A lower bound of TSC cycles per millisecond; 0 while unknown.
    static CYCLES_PER_MILLI_LOW: AtomicU64 = AtomicU64::new(0);
    /// The first (TSC, monotonic ns) pair, or `None` where the kernel keeps time otherwise.
    pub(super) static FIRST_SAMPLE: OnceLock<Option<(u64, i64)>> = OnceLock::new();
    /// How long apart the two samples of the calibration are, at least.
    const CALIBRATION_NS: i64 = 20 * NANOS_PER_MILLI;

    #[inline]
    pub fn read() -> Option<u64> {
        // SAFETY: rdtsc has no preconditions on x86_64.
        Some(unsafe { core::arch::x86_64::_rdtsc() })
    }

    pub fn cycles_per_milli_low() -> u64 {
        match CYCLES_PER_MILLI_LOW.load(Ordering::Relaxed) {
            0 => calibrate().unwrap_or(0),
            known => known,
        }
    }

    /// Measures the TSC's rate over at least `CALIBRATION_NS` from the first call on; until
    /// then `None`, and stamps read the system clock.
    fn calibrate() -> Option<u64> {
        let sample = || Some((read()?, clock_nanos(libc::CLOCK_MONOTONIC_RAW)?));
        let (tsc0, ns0) = (*FIRST_SAMPLE.get_or_init(|| {
            let source = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
            let kernel_uses_tsc =
                std::fs::read_to_string(source).is_ok_and(|name| name.trim() == "tsc");
            if kernel_uses_tsc {
                sample()
            } else {
                None
            }
        }))?;
        let (tsc1, ns1) = sample()?;
        let elapsed_ns = ns1 - ns0;
        if elapsed_ns < CALIBRATION_NS || tsc1 <= tsc0 {
            return None;
        }
        let per_ms = u128::from(tsc1 - tsc0) * NANOS_PER_MILLI as u128 / elapsed_ns as u128;
        let low = u64::try_from(per_ms * 99 / 100).ok()?;
        CYCLES_PER_MILLI_LOW.store(low, Ordering::Relaxed);
        Some(low)
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod tsc {
    #[inline]
    pub fn read() -> Option<u64> {
        None
    }

    pub fn cycles_per_milli_low() -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_match_the_system_clock_to_the_millisecond() {
        let mut clock = MillisClock::default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
        let mut checked = 0u64;
        while std::time::Instant::now() < deadline {
            let before = now_millis();
            let stamp = clock.now();
            let after = now_millis();
            assert!(
                (before..=after).contains(&stamp),
                "{before} <= {stamp} <= {after}"
            );
            checked += 1;
        }
        assert!(checked > 1_000);
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn the_rate_bound_is_learned_after_the_calibration_time() {
        tsc::cycles_per_milli_low();
        if tsc::FIRST_SAMPLE.get().is_some_and(Option::is_none) {
            return; // the kernel keeps time otherwise: every stamp reads the system clock
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
        let per_ms = tsc::cycles_per_milli_low();
        // Any real TSC ticks between 100 MHz and 10 GHz.
        assert!((100_000..10_000_000).contains(&per_ms), "{per_ms}");
    }
}
