//! Where log lines go. Layers below the VFS report conditions that are not errors of
//! their own (a reader mark that could not be removed, a cleanup that failed) through
//! [`log`]; the FFI shim installs a sink that forwards to `sqlite3_log`. Unit tests and the
//! command have no SQLite, so without a sink a line is dropped.

use once_cell::sync::OnceCell;

/// A function that writes one log line with a SQLite result code.
pub type Sink = fn(code: i32, msg: &str);

static SINK: OnceCell<Sink> = OnceCell::new();

/// Installs the sink once per process (the first one stays, like the VFS registration).
pub fn set_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Writes a line to the installed sink, if any.
pub fn log(code: i32, msg: &str) {
    if let Some(sink) = SINK.get() {
        sink(code, msg);
    }
}
