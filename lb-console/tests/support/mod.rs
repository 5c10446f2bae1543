//! What the browser tests share: a headless chromium ([`browser`]), the
//! real console binary ([`console`]), a fake daemon for it to ask
//! ([`daemon`]) and a child's stderr kept and read line by line
//! ([`stderr`], also for `e2e.rs`).
pub mod browser;
pub mod console;
pub mod daemon;
pub mod stderr;
