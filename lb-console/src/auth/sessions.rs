//! Logged-in sessions: a random token (the cookie) maps to the user, where
//! they logged in from, and the session's CSRF token. A session ends at
//! logout, after `idle` without a request, or `absolute` after login,
//! whichever comes first. Kept in memory: a restarted console asks everyone
//! to log in again.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// ... and this long after its login, however busy.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);
/// The most sessions held; a login beyond it ends the least recently used.
pub const MAX_SESSIONS: usize = 64;

/// One logged-in session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// Where the login came from.
    pub from: IpAddr,
    /// The token every change must carry (a form field or a header).
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// The sessions, with their limits.
#[derive(Debug)]
pub struct Sessions {
    by_token: HashMap<String, Session>,
    idle: Duration,
    absolute: Duration,
    max: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(IDLE, ABSOLUTE, MAX_SESSIONS)
    }
}

impl Sessions {
    pub fn new(idle: Duration, absolute: Duration, max: usize) -> Self {
        Self {
            by_token: HashMap::new(),
            idle,
            absolute,
            max: max.max(1),
        }
    }

    /// Opens a session for `user` logged in from `from`; returns its token.
    pub fn open(&mut self, user: &str, from: IpAddr, now: Instant) -> String {
        self.expire(now);
        while self.by_token.len() >= self.max {
            let oldest = self
                .by_token
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(token, _)| token.clone());
            match oldest {
                Some(token) => self.by_token.remove(&token),
                None => break,
            };
        }
        let token = super::random_hex(32);
        self.by_token.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                from,
                csrf: super::random_hex(32),
                created: now,
                last_seen: now,
            },
        );
        token
    }

    /// The session of `token` if it is still open; a request through it
    /// counts as activity. An expired one is removed.
    pub fn touch(&mut self, token: &str, now: Instant) -> Option<Session> {
        let (idle, absolute) = (self.idle, self.absolute);
        let session = self.by_token.get_mut(token)?;
        if is_expired(session, idle, absolute, now) {
            self.by_token.remove(token);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends the session of `token` (logout); whether there was one.
    pub fn close(&mut self, token: &str) -> bool {
        self.by_token.remove(token).is_some()
    }

    /// How many sessions are open at `now`.
    pub fn open_count(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.by_token.len()
    }

    fn expire(&mut self, now: Instant) {
        let (idle, absolute) = (self.idle, self.absolute);
        self.by_token
            .retain(|_, s| !is_expired(s, idle, absolute, now));
    }
}

fn is_expired(session: &Session, idle: Duration, absolute: Duration, now: Instant) -> bool {
    now.saturating_duration_since(session.last_seen) >= idle
        || now.saturating_duration_since(session.created) >= absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_session_lives_while_used_and_ends_when_idle() {
        let mut s = Sessions::new(secs(60), secs(600), 8);
        let t0 = Instant::now();
        let token = s.open("admin", FROM, t0);
        assert_eq!(token.len(), 64);
        let session = s.touch(&token, t0 + secs(59)).unwrap();
        assert_eq!(session.user, "admin");
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, token);
        // Used at 59 s: alive until 119 s.
        assert!(s.touch(&token, t0 + secs(118)).is_some());
        assert!(s.touch(&token, t0 + secs(178)).is_none());
        // Gone for good.
        assert!(s.touch(&token, t0 + secs(179)).is_none());
        assert!(s.touch("not a token", t0).is_none());
    }

    #[test]
    fn a_busy_session_still_ends_at_its_absolute_limit() {
        let mut s = Sessions::new(secs(60), secs(150), 8);
        let t0 = Instant::now();
        let token = s.open("admin", FROM, t0);
        for t in [50, 100, 149] {
            assert!(s.touch(&token, t0 + secs(t)).is_some(), "{t}");
        }
        assert!(s.touch(&token, t0 + secs(150)).is_none());
    }

    #[test]
    fn logout_ends_the_session_and_others_stay() {
        let mut s = Sessions::default();
        let t0 = Instant::now();
        let a = s.open("admin", FROM, t0);
        let b = s.open("admin", FROM, t0);
        assert_ne!(a, b);
        assert!(s.close(&a));
        assert!(!s.close(&a));
        assert!(s.touch(&a, t0).is_none());
        assert!(s.touch(&b, t0).is_some());
    }

    #[test]
    fn beyond_the_limit_the_least_recently_used_session_ends() {
        let mut s = Sessions::new(secs(60), secs(600), 2);
        let t0 = Instant::now();
        let a = s.open("admin", FROM, t0);
        let b = s.open("admin", FROM, t0 + secs(1));
        s.touch(&a, t0 + secs(2));
        let c = s.open("admin", FROM, t0 + secs(3));
        assert_eq!(s.open_count(t0 + secs(3)), 2);
        assert!(s.touch(&b, t0 + secs(3)).is_none());
        assert!(s.touch(&a, t0 + secs(3)).is_some());
        assert!(s.touch(&c, t0 + secs(3)).is_some());
    }
}
