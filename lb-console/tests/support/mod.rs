//! What the browser tests share: a headless chromium ([`browser`]), the
//! real console binary ([`console`]) and a fake daemon for it to ask
//! ([`daemon`]).
pub mod browser;
pub mod console;
pub mod daemon;
