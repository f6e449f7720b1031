//! The small async runtime each adapter (PostgreSQL, Kinesis, DynamoDB Streams) owns behind
//! its blocking interface: one worker drives connections, callers block on it.

/// A runtime with one worker thread named `name`.
pub fn background(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all().build()
}
