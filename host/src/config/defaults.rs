//! The value of every optional config key left out.

use std::time::Duration;

use bytesize::ByteSize;

pub fn yes() -> bool {
    true
}
pub fn admin_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9090))
}
pub fn max_body() -> ByteSize {
    ByteSize::mib(64)
}
pub fn admin_request_timeout() -> Duration {
    Duration::from_secs(30)
}
pub fn max_uploads() -> usize {
    2
}
pub fn admin_max_connections() -> usize {
    256
}
pub fn admin_body_timeout() -> Duration {
    Duration::from_secs(120)
}
pub fn drain_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn batch() -> usize {
    100
}
pub fn max_attempts() -> u32 {
    5
}
pub fn claim_idle() -> Duration {
    Duration::from_secs(30)
}
pub fn cross_slot_marker_ttl() -> Duration {
    Duration::from_secs(600)
}
pub fn backoff_initial() -> Duration {
    Duration::from_millis(200)
}
pub fn backoff_max() -> Duration {
    Duration::from_secs(30)
}
pub fn memory() -> ByteSize {
    ByteSize::mib(64)
}
pub fn timeout() -> Duration {
    Duration::from_secs(1)
}
pub fn instance_reuse() -> u64 {
    10_000
}
pub fn throttle_after() -> Duration {
    Duration::from_millis(100)
}
pub fn throttle_share() -> f64 {
    0.25
}
pub fn max_outputs() -> usize {
    1_000
}
pub fn max_output_bytes() -> ByteSize {
    ByteSize::mib(16)
}

pub fn wait_timeout() -> Duration {
    Duration::from_secs(1)
}

pub fn idle_consumers() -> Duration {
    Duration::from_secs(3600)
}

pub fn lease_ttl() -> Duration {
    Duration::from_secs(10)
}

pub fn sample_ratio() -> f64 {
    1.0
}
pub fn http_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
pub fn http_first_byte_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn http_between_bytes_timeout() -> Duration {
    Duration::from_secs(10)
}
pub fn http_max_response_bytes() -> ByteSize {
    ByteSize::mib(10)
}
pub fn http_max_in_flight() -> usize {
    256
}
