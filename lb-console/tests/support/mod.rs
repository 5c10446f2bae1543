//! What the browser tests share: a headless chromium ([`browser`]) and the
//! real console binary ([`console`]).
pub mod browser;
pub mod console;
