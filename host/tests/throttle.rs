//! Long calls: a handler call still running after `limits.throttle_after` gets at most
//! `limits.throttle_share` of a core until it returns or times out. On the `wasm` module
//! alone; the test reads the CPU time of its own thread, which runs the call (wasmtime
//! runs an async call on a fiber of the calling thread), so that the tests running beside
//! it in the same process do not count.

use std::time::{Duration, Instant};

use sluice_testkit::*;

/// CPU time (user + system) this thread has used (`RUSAGE_THREAD`, getrusage(2)).
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut usage), 0);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Time this thread has been runnable: on a CPU plus waiting for one (the first two
/// fields of `/proc/thread-self/schedstat`, in ns); `None` where the kernel does not
/// keep them. A throttled call sleeps (not runnable); a spinning one is runnable all
/// along, however many other threads compete for the cores.
fn runnable() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
    let (on_cpu, waiting) = (fields.next()??, fields.next()??);
    Some(Duration::from_nanos(on_cpu + waiting))
}

/// Runs one infinite-loop call to its 600 ms timeout with `throttle_share`; returns the
/// CPU it used, the time it was runnable (if known) and its wall time.
async fn spin(throttle_share: f64) -> (Duration, Option<Duration>, Duration) {
    let runtime = sluice::wasm::Runtime::new(false, None).expect("runtime");
    let plugin =
        sluice::wasm::Plugin::load(&runtime, &plugin_wasm("hostile")).expect("hostile plugin");
    let cell: sluice::wasm::PluginCell =
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(plugin));
    let config = [("target".to_owned(), "OUT".to_owned())]
        .into_iter()
        .collect();
    let limits = sluice::wasm::Limits {
        timeout: Duration::from_millis(600),
        throttle_after: Duration::from_millis(50),
        throttle_share,
        ..sluice::config::LimitsConfig::default().to_limits()
    };
    let mut instance = sluice::wasm::Instance::new(cell, std::sync::Arc::new(config), limits);
    let mut entry = sluice::message::Entry {
        id: "1-0".into(),
        fields: vec![("attack".into(), b"loop".to_vec())],
        attempt: 1,
        raw_names: None,
        trace: None,
    };
    let (cpu, runnable_before, wall) = (thread_cpu(), runnable(), Instant::now());
    let result = instance.handle("IN", &mut entry).await;
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    let runnable = runnable()
        .zip(runnable_before)
        .map(|(after, before)| after - before);
    println!("throttle_share {throttle_share}: {cpu:?} of CPU, runnable {runnable:?}, in {wall:?}");
    assert!(
        matches!(&result, Err(e) if e.to_string().contains("limits.timeout")),
        "{result:?}"
    );
    assert_eq!(
        instance.last_call_throttled(),
        throttle_share < 1.0,
        "throttled calls are reported (for the metrics)"
    );
    assert_eq!(
        entry.fields,
        [("attack".to_owned(), b"loop".to_vec())],
        "the entry's fields are given back after a timeout"
    );
    // The same instance slot serves the next message (a fresh instance after the trap).
    entry.fields = vec![("attack".into(), b"read-file".to_vec())];
    let next = instance.handle("IN", &mut entry).await;
    assert!(next.is_ok(), "{next:?}");
    assert!(
        !instance.last_call_throttled(),
        "a short call is not throttled"
    );
    (cpu, runnable, wall)
}

/// With a share of 0.2 a spinning call uses about 50 ms + 20% of the rest of its 600 ms,
/// not the whole time; and nothing runs on once the calls have ended.
#[tokio::test]
async fn long_calls_keep_to_their_share() {
    let (cpu, runnable, wall) = spin(0.2).await;
    // Expected ~160 ms; unthrottled, a spinning call uses its whole wall time.
    assert!(
        cpu.as_secs_f64() < wall.as_secs_f64() * 0.5,
        "throttled call used {cpu:?} of CPU in {wall:?}"
    );
    let throttled = (cpu, runnable);
    let (cpu, runnable, wall) = spin(1.0).await;
    println!("unthrottled: {cpu:?} in {wall:?} (full speed when the machine is idle)");
    // The control: without throttling the same call is runnable all along (on a busy
    // machine it gets less than its whole wall time on a CPU, and waits the rest).
    match (runnable, throttled.1) {
        (Some(runnable), Some(throttled)) => {
            assert!(
                runnable.as_secs_f64() > wall.as_secs_f64() * 0.8,
                "unthrottled call runnable {runnable:?} of {wall:?}"
            );
            assert!(
                throttled.as_secs_f64() < wall.as_secs_f64() * 0.5,
                "throttled call runnable {throttled:?} of {wall:?}: the throttle made no difference"
            );
        }
        _ => assert!(
            cpu.as_secs_f64() > throttled.0.as_secs_f64() * 1.5,
            "unthrottled {cpu:?} against throttled {:?}: the throttle made no difference",
            throttled.0
        ),
    }
    // Nothing keeps running on this thread after its call timed out.
    let before = thread_cpu();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = thread_cpu() - before;
    assert!(
        idle < Duration::from_millis(100),
        "{idle:?} of CPU after the calls ended"
    );
}
