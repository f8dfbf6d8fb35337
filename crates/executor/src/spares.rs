//! Spares: interpreters started before the execution (or context) they will serve, so that a
//! request pays only for handing its code over.
//!
//! A spare is a whole [`Instance`]: its own bwrap sandbox, supervisor and runner, used by
//! exactly one execution or context and never again. Spares exist only for languages used
//! within the last `--spare-idle-secs` (or named in `--prestart`, until first used): taking
//! one starts the next. A spare serves only a request with the environment it was started
//! with (the session's variables reach the interpreter when it starts, as without spares),
//! while the installed packages are the ones it started with and while the egress proxy's
//! socket is there exactly if it was when the spare started (a warm pool's container gets its
//! socket when a session takes it); otherwise it is discarded and
//! the request starts its own interpreter.

use crate::instance::{Instance, Launcher};
use sandbox_core::Language;
use sandbox_protocol::SpareInfo;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A language worth keeping a spare for.
struct Wanted {
    /// The environment its last request had.
    env: BTreeMap<String, String>,
    /// When it stops being wanted; `None` until first used (pre-started).
    until: Option<Instant>,
    /// A spare is being started for it.
    starting: bool,
}

#[derive(Default)]
struct Pool {
    ready: HashMap<Language, Instance>,
    wanted: HashMap<Language, Wanted>,
}

/// The spare interpreters of one executor.
pub struct Spares {
    launcher: Arc<Launcher>,
    idle: Duration,
    pool: Mutex<Pool>,
}

impl Spares {
    /// Spares kept for `idle` after their language was last used; none when `idle` is zero.
    pub fn new(launcher: Arc<Launcher>, idle: Duration) -> Self {
        Spares { launcher, idle, pool: Mutex::new(Pool::default()) }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enabled(&self) -> bool {
        !self.idle.is_zero()
    }

    /// An instance for `language` with `env`: the spare when it fits, else a new one. Either
    /// way the language counts as used; once the instance's work is done (or, for a context,
    /// under way) the taker calls [`replenish`](Self::replenish) to start the next spare.
    pub fn take(&self, language: Language, env: &BTreeMap<String, String>) -> std::io::Result<Instance> {
        let spare = {
            let mut pool = self.pool();
            if self.enabled() {
                let starting = pool.wanted.get(&language).is_some_and(|w| w.starting && w.env == *env);
                let until = Some(Instant::now() + self.idle);
                pool.wanted.insert(language, Wanted { env: env.clone(), until, starting });
            }
            pool.ready.remove(&language)
        };
        let (packages, egress) = (self.launcher.packages(), self.launcher.egress().is_some());
        match spare {
            Some(s) if s.serves(env, &packages, egress) => Ok(s),
            _ => self.launcher.start(language, env),
        }
    }

    /// Starts spares for `languages` now, kept until each is first used.
    pub fn prestart(self: &Arc<Self>, languages: &[Language]) {
        if !self.enabled() {
            return;
        }
        for &language in languages {
            self.pool()
                .wanted
                .insert(language, Wanted { env: BTreeMap::new(), until: None, starting: false });
            self.replenish(language);
        }
    }

    /// Starts a spare for `language` in the background, if it is wanted and has none. It is
    /// started on a blocking thread, off the executor's own, and only when asked: after the
    /// execution that used the last one, so that its start does not compete with that
    /// execution for the CPU.
    pub fn replenish(self: &Arc<Self>, language: Language) {
        let env = {
            let mut pool = self.pool();
            let has_one = pool.ready.contains_key(&language);
            match pool.wanted.get_mut(&language) {
                Some(w) if !w.starting && !has_one => {
                    w.starting = true;
                    w.env.clone()
                }
                _ => return,
            }
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let started = this.launcher.start(language, &env);
            if let Err(e) = &started {
                tracing::warn!(%language, error = %e, "a spare interpreter could not be started");
            }
            let mut pool = this.pool();
            let Some(w) = pool.wanted.get_mut(&language) else { return };
            w.starting = false;
            if let Ok(instance) = started
                && w.env == env
            {
                pool.ready.entry(language).or_insert(instance);
            }
        });
    }

    /// Lets go of spares whose language was not used for the idle period, and replaces any
    /// that died.
    pub fn tidy(self: &Arc<Self>, now: Instant) {
        let mut dead = Vec::new();
        {
            let mut pool = self.pool();
            pool.wanted.retain(|_, w| w.until.is_none_or(|t| t > now));
            let Pool { ready, wanted } = &mut *pool;
            ready.retain(|language, spare| {
                let keep = wanted.contains_key(language) && !spare.process.has_exited();
                if keep {
                    return true;
                }
                dead.push(*language);
                false
            });
        }
        for language in dead {
            self.replenish(language);
        }
    }

    /// The spares waiting now.
    pub fn list(&self) -> Vec<SpareInfo> {
        let mut out: Vec<_> = self
            .pool()
            .ready
            .iter()
            .map(|(language, s)| SpareInfo { language: *language, age_ms: s.age().as_millis() as u64 })
            .collect();
        out.sort_by_key(|s| s.language);
        out
    }

    /// Ends every spare and wants none any more (shutdown).
    pub fn clear(&self) {
        let mut pool = self.pool();
        pool.wanted.clear();
        pool.ready.clear();
    }
}
