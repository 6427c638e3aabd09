//! System metrics as MLflow's sampler names and computes them, read from the kernel on a
//! thread of fastflow's own (no psutil, no Python).
//!
//! What MLflow 3.17.2 logs (`mlflow/system_metrics`), and how each figure is read here:
//! - `cpu_utilization_percentage`: the share of CPU time not idle (nor waiting for I/O)
//!   since the previous sample, from the first line of `/proc/stat` (psutil's
//!   `cpu_percent()`, guest time counted once).
//! - `system_memory_usage_megabytes` / `_percentage`: `MemTotal - MemAvailable` of
//!   `/proc/meminfo` (psutil's `used`), in MB of 10^6 bytes and as a share of `MemTotal`.
//! - `disk_usage_percentage` / `_megabytes`, `disk_available_megabytes`: `statvfs("/")`, with
//!   psutil's arithmetic (used = blocks - free, percent of used + available to users).
//! - `network_receive_megabytes` / `_transmit_megabytes`: bytes of every interface in
//!   `/proc/net/dev` since sampling started.
//! - per NVIDIA GPU, through NVML when `libnvidia-ml.so.1` loads: `gpu_{i}_memory_usage_
//!   percentage` / `_megabytes`, `gpu_{i}_utilization_percentage`, `gpu_{i}_power_usage_
//!   watts` / `_percentage`.
//!
//! Samples are averaged and rounded to one decimal per published step, except the network
//! figures, which are the latest (as MLflow does).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

const MEGABYTE: f64 = 1e6;

#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTimes {
    total: f64,
    busy: f64,
}

/// The first line of `/proc/stat`: user nice system idle iowait irq softirq steal guest
/// guest_nice. Guest time is already in user and nice, so it is not counted twice.
fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
    if values.len() < 4 {
        return None;
    }
    let field = |i: usize| values.get(i).copied().unwrap_or(0.0);
    let total = values.iter().sum::<f64>() - field(8) - field(9);
    let busy = total - field(3) - field(4);
    Some(CpuTimes { total, busy })
}

fn cpu_times() -> Option<CpuTimes> {
    parse_cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn cpu_percent(before: CpuTimes, now: CpuTimes) -> f64 {
    let total = (now.total - before.total).max(0.0);
    let busy = (now.busy - before.busy).max(0.0);
    if total <= 0.0 {
        return 0.0;
    }
    round1(busy / total * 100.0)
}

/// (used, total) bytes.
fn parse_memory(meminfo: &str) -> Option<(f64, f64)> {
    let field = |name: &str| {
        meminfo.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: f64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024.0)
        })
    };
    let total = field("MemTotal")?;
    let free = field("MemFree").unwrap_or(0.0);
    let mut available = match field("MemAvailable") {
        Some(available) if available > 0.0 => available,
        // Kernels before 3.14: what `free` estimates.
        _ => free + field("Buffers").unwrap_or(0.0) + field("Cached").unwrap_or(0.0),
    };
    if available > total {
        available = free;
    }
    Some((total - available.max(0.0), total))
}

fn memory() -> Option<(f64, f64)> {
    parse_memory(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// (percent, used bytes, available bytes) of the file system holding `path`.
fn disk(path: &Path) -> Option<(f64, f64, f64)> {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer of the right type for statvfs to fill.
    if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let st = unsafe { st.assume_init() };
    let unit = st.f_frsize as f64;
    let total = st.f_blocks as f64 * unit;
    let used = total - st.f_bfree as f64 * unit;
    let available = st.f_bavail as f64 * unit;
    let user_total = used + available;
    let percent = if user_total > 0.0 {
        round1(used / user_total * 100.0)
    } else {
        0.0
    };
    Some((percent, used, available))
}

/// (received, transmitted) bytes summed over every interface.
fn parse_network(dev: &str) -> Option<(f64, f64)> {
    let mut totals = (0.0, 0.0);
    let mut any = false;
    for line in dev.lines().skip(2) {
        let Some((_, counters)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<f64> = counters
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if fields.len() >= 9 {
            totals.0 += fields[0];
            totals.1 += fields[8];
            any = true;
        }
    }
    any.then_some(totals)
}

fn network() -> Option<(f64, f64)> {
    parse_network(&std::fs::read_to_string("/proc/net/dev").ok()?)
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// NVIDIA's management library, loaded at run time when it is installed.
mod nvml {
    use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void};

    type Device = *mut c_void;

    #[repr(C)]
    #[derive(Default)]
    struct Memory {
        total: c_ulonglong,
        free: c_ulonglong,
        used: c_ulonglong,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Utilization {
        gpu: c_uint,
        memory: c_uint,
    }

    type Init = unsafe extern "C" fn() -> c_int;
    type Count = unsafe extern "C" fn(*mut c_uint) -> c_int;
    type HandleByIndex = unsafe extern "C" fn(c_uint, *mut Device) -> c_int;
    type MemoryInfo = unsafe extern "C" fn(Device, *mut Memory) -> c_int;
    type UtilizationRates = unsafe extern "C" fn(Device, *mut Utilization) -> c_int;
    type Milliwatts = unsafe extern "C" fn(Device, *mut c_uint) -> c_int;

    pub struct Nvml {
        devices: Vec<Device>,
        memory_info: MemoryInfo,
        utilization: UtilizationRates,
        power: Milliwatts,
        power_limit: Milliwatts,
    }

    // SAFETY: NVML's handles and functions may be used from any thread.
    unsafe impl Send for Nvml {}

    fn symbol<T>(library: *mut c_void, name: &std::ffi::CStr) -> Option<T> {
        // SAFETY: dlsym on a handle dlopen returned; the caller names the symbol's type.
        let found = unsafe { libc::dlsym(library, name.as_ptr() as *const c_char) };
        (!found.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, T>(&found) })
    }

    impl Nvml {
        /// `None` where the library is missing or finds no GPU, as MLflow's monitor is
        /// skipped then.
        pub fn load() -> Option<Nvml> {
            // SAFETY: loading a shared library by its well-known name; it stays loaded.
            let library = unsafe { libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW) };
            if library.is_null() {
                return None;
            }
            let init: Init = symbol(library, c"nvmlInit_v2")?;
            let count: Count = symbol(library, c"nvmlDeviceGetCount_v2")?;
            let by_index: HandleByIndex = symbol(library, c"nvmlDeviceGetHandleByIndex_v2")?;
            // SAFETY: NVML's documented signatures, resolved from the library itself.
            unsafe {
                if init() != 0 {
                    return None;
                }
                let mut n: c_uint = 0;
                if count(&mut n) != 0 {
                    return None;
                }
                let mut devices = Vec::new();
                for i in 0..n {
                    let mut device: Device = std::ptr::null_mut();
                    if by_index(i, &mut device) == 0 {
                        devices.push(device);
                    }
                }
                Some(Nvml {
                    devices,
                    memory_info: symbol(library, c"nvmlDeviceGetMemoryInfo")?,
                    utilization: symbol(library, c"nvmlDeviceGetUtilizationRates")?,
                    power: symbol(library, c"nvmlDeviceGetPowerUsage")?,
                    power_limit: symbol(library, c"nvmlDeviceGetEnforcedPowerLimit")?,
                })
            }
        }

        /// What MLflow's GPU monitor records per device; a query that fails leaves its
        /// figures out of this sample, as there.
        pub fn sample(&self, out: &mut Vec<(String, f64)>) {
            for (i, &device) in self.devices.iter().enumerate() {
                // SAFETY: a device handle NVML gave, and out-parameters of the right types.
                unsafe {
                    let mut memory = Memory::default();
                    if (self.memory_info)(device, &mut memory) == 0 && memory.total > 0 {
                        let percent = memory.used as f64 / memory.total as f64 * 100.0;
                        out.push((
                            format!("gpu_{i}_memory_usage_percentage"),
                            super::round1(percent),
                        ));
                        out.push((
                            format!("gpu_{i}_memory_usage_megabytes"),
                            memory.used as f64 / super::MEGABYTE,
                        ));
                    }
                    let mut rates = Utilization::default();
                    if (self.utilization)(device, &mut rates) == 0 {
                        out.push((format!("gpu_{i}_utilization_percentage"), rates.gpu as f64));
                    }
                    let (mut power, mut limit) = (0, 0);
                    if (self.power)(device, &mut power) == 0
                        && (self.power_limit)(device, &mut limit) == 0
                        && limit > 0
                    {
                        out.push((format!("gpu_{i}_power_usage_watts"), power as f64 / 1000.0));
                        out.push((
                            format!("gpu_{i}_power_usage_percentage"),
                            power as f64 / limit as f64 * 100.0,
                        ));
                    }
                }
            }
        }
    }
}

/// Reads the machine's figures, one sample at a time.
pub struct Probe {
    cpu: Option<CpuTimes>,
    network_start: Option<(f64, f64)>,
    gpus: Option<nvml::Nvml>,
}

impl Probe {
    pub fn new() -> Probe {
        Probe {
            cpu: cpu_times(),
            network_start: network(),
            gpus: nvml::Nvml::load(),
        }
    }

    /// One sample: (name without prefix, value), in MLflow's order.
    pub fn sample(&mut self) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(16);
        let now = cpu_times();
        if let Some(now) = now {
            let before = self.cpu.unwrap_or(now);
            out.push((
                "cpu_utilization_percentage".into(),
                cpu_percent(before, now),
            ));
            self.cpu = Some(now);
        }
        if let Some((used, total)) = memory() {
            out.push(("system_memory_usage_megabytes".into(), used / MEGABYTE));
            out.push((
                "system_memory_usage_percentage".into(),
                used / total * 100.0,
            ));
        }
        if let Some((percent, used, available)) = disk(Path::new("/")) {
            out.push(("disk_usage_percentage".into(), percent));
            out.push(("disk_usage_megabytes".into(), used / MEGABYTE));
            out.push(("disk_available_megabytes".into(), available / MEGABYTE));
        }
        if let (Some((received, sent)), Some((received0, sent0))) = (network(), self.network_start)
        {
            out.push((
                "network_receive_megabytes".into(),
                received / MEGABYTE - received0 / MEGABYTE,
            ));
            out.push((
                "network_transmit_megabytes".into(),
                sent / MEGABYTE - sent0 / MEGABYTE,
            ));
        }
        if let Some(gpus) = &self.gpus {
            gpus.sample(&mut out);
        }
        out
    }
}

impl Default for Probe {
    fn default() -> Self {
        Probe::new()
    }
}

/// Samples gathered until the next publication.
#[derive(Default)]
pub struct Aggregate {
    sums: BTreeMap<String, (f64, u32)>,
    latest: BTreeMap<String, f64>,
    order: Vec<String>,
}

impl Aggregate {
    pub fn add(&mut self, sample: Vec<(String, f64)>) {
        for (name, value) in sample {
            if !self.sums.contains_key(&name) && !self.latest.contains_key(&name) {
                self.order.push(name.clone());
            }
            if name.starts_with("network_") {
                self.latest.insert(name, value);
            } else {
                let entry = self.sums.entry(name).or_insert((0.0, 0));
                entry.0 += value;
                entry.1 += 1;
            }
        }
    }

    /// Means rounded to one decimal (network figures as they are), and a fresh start.
    pub fn take(&mut self) -> Vec<(String, f64)> {
        let order = std::mem::take(&mut self.order);
        let mut sums = std::mem::take(&mut self.sums);
        let mut latest = std::mem::take(&mut self.latest);
        order
            .into_iter()
            .filter_map(|name| {
                if let Some(value) = latest.remove(&name) {
                    return Some((name, value));
                }
                let (sum, n) = sums.remove(&name)?;
                Some((name, round1(sum / n as f64)))
            })
            .collect()
    }
}

/// How the sampler runs, as MLflow's environment variables and arguments set it.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub interval: Duration,
    pub samples_before_logging: u32,
    /// `system/`, or `system/<node id>/`.
    pub prefix: String,
    /// MLflow's step of the first publication: 0, or one past the run's last when resumed.
    pub first_step: i64,
}

/// Publishes one aggregate: (full metric name, value) and the step.
pub type Publish = Box<dyn FnMut(Vec<(String, f64)>, i64) -> bool + Send>;

/// A sampling thread, stopped when dropped.
pub struct Sampler {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling: every `interval` a sample, every `samples_before_logging` samples a
    /// publication, as MLflow's monitor loop does. `publish` returning false (the run is
    /// gone) ends the thread.
    pub fn start(schedule: Schedule, mut publish: Publish) -> std::io::Result<Sampler> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = stop.clone();
        let thread = thread::Builder::new()
            .name("fastflow-sysmetrics".into())
            .spawn(move || {
                let mut probe = Probe::new();
                let mut aggregate = Aggregate::default();
                let mut step = schedule.first_step;
                let samples = schedule.samples_before_logging.max(1);
                loop {
                    for _ in 0..samples {
                        aggregate.add(probe.sample());
                        let (lock, wake) = &*stopped;
                        let mut done = lock.lock();
                        if !*done {
                            wake.wait_for(&mut done, schedule.interval);
                        }
                        if *done {
                            // Samples not published yet go with the thread, as in MLflow.
                            return;
                        }
                    }
                    let named = aggregate
                        .take()
                        .into_iter()
                        .map(|(name, value)| (format!("{}{name}", schedule.prefix), value))
                        .collect();
                    if !publish(named, step) {
                        return;
                    }
                    step += 1;
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        {
            let (lock, wake) = &*self.stop;
            *lock.lock() = true;
            wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn cpu_time_counts_guest_time_once() {
        let stat = "cpu  100 0 50 800 50 0 0 0 30 0\ncpu0 1 2 3\n";
        let times = parse_cpu_times(stat).unwrap();
        assert_eq!(times.total, 1000.0);
        assert_eq!(times.busy, 150.0);
        let later = parse_cpu_times("cpu  150 0 100 900 50 0 0 0 30 0\n").unwrap();
        assert_eq!(cpu_percent(times, later), 50.0);
    }

    #[test]
    fn memory_used_is_total_less_available() {
        let meminfo = "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n";
        assert_eq!(
            parse_memory(meminfo),
            Some((600.0 * 1024.0, 1000.0 * 1024.0))
        );
    }

    #[test]
    fn network_sums_every_interface() {
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 3000 7 0 0 0 0 0 0\n";
        assert_eq!(parse_network(dev), Some((1100.0, 3200.0)));
    }

    #[test]
    fn figures_are_averaged_except_the_network_ones() {
        let mut aggregate = Aggregate::default();
        aggregate.add(vec![("a".into(), 1.0), ("network_x".into(), 5.0)]);
        aggregate.add(vec![("a".into(), 2.0), ("network_x".into(), 7.0)]);
        assert_eq!(
            aggregate.take(),
            vec![("a".into(), 1.5), ("network_x".into(), 7.0)]
        );
        assert!(aggregate.take().is_empty());
    }

    #[test]
    fn this_machine_gives_plausible_figures() {
        let mut probe = Probe::new();
        std::thread::sleep(Duration::from_millis(50));
        let sample: BTreeMap<String, f64> = probe.sample().into_iter().collect();
        let cpu = sample["cpu_utilization_percentage"];
        assert!((0.0..=100.0).contains(&cpu), "{cpu}");
        let memory = sample["system_memory_usage_percentage"];
        assert!(memory > 0.0 && memory < 100.0, "{memory}");
        assert!(sample["disk_usage_megabytes"] > 0.0);
        assert!(sample.contains_key("network_receive_megabytes"));
    }

    #[test]
    fn the_sampler_publishes_steps_in_order_and_stops_at_once() {
        let (tx, rx) = mpsc::channel();
        let schedule = Schedule {
            interval: Duration::from_millis(20),
            samples_before_logging: 2,
            prefix: "system/node_1/".into(),
            first_step: 3,
        };
        let mut sampler = Sampler::start(
            schedule,
            Box::new(move |metrics, step| tx.send((metrics, step)).is_ok()),
        )
        .unwrap();
        let (metrics, step) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(step, 3);
        assert!(metrics
            .iter()
            .any(|(name, _)| name == "system/node_1/cpu_utilization_percentage"));
        let (_, step) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(step, 4);
        let asked = Instant::now();
        sampler.stop();
        assert!(asked.elapsed() < Duration::from_secs(1));
    }
}
