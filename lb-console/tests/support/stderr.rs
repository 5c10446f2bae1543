//! A child process's stderr, kept whole (for a failure to show) and passed
//! on line by line (for a test to wait for one), read on a thread of its
//! own until the process closes it.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};

pub struct Stderr {
    /// Everything written so far.
    pub log: Arc<Mutex<String>>,
    /// Each line as it comes.
    pub lines: Receiver<String>,
}

/// Takes `child`'s piped stderr and starts reading it.
pub fn capture(child: &mut Child) -> Stderr {
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, lines) = channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            let _ = tx.send(line);
        }
    });
    Stderr { log, lines }
}
