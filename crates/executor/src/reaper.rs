//! Reaping orphans. The executor is its container's PID 1, so every process orphaned inside
//! the container becomes its child: a sandbox's supervisor, for one, when a timeout or a kill
//! request ends bwrap before bwrap has collected it. Unreaped, each stays a zombie holding a
//! slot of the container's process limit until no process can start at all. The [`Reaper`] collects every exited child that no execution waits for; the
//! engine registers the children it waits for itself, so the two never collect the same one.
//! Every sandbox is spawned from one thread that lives as long as the executor (see
//! [`Reaper::spawn_owned`]).

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// Tracks the children the engine waits for and collects all others once they exit.
#[derive(Debug, Default)]
pub struct Reaper {
    owned: Mutex<HashSet<libc::pid_t>>,
}

impl Reaper {
    fn owned(&self) -> std::sync::MutexGuard<'_, HashSet<libc::pid_t>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a child the caller will wait for: it is spawned with the table locked, so it
    /// cannot be collected here before it is registered.
    ///
    /// It is spawned from the executor's spawning thread, never the caller's: bwrap's
    /// `--die-with-parent` asks the kernel to kill the sandbox when its parent *thread* ends,
    /// and a pooled thread (tokio retires its blocking threads after 10 s idle) would take the
    /// sandboxes it started with it, mid-execution.
    pub fn spawn_owned(&self, cmd: Command) -> std::io::Result<Child> {
        let mut owned = self.owned();
        let (reply, answer) = mpsc::channel();
        let gone = || std::io::Error::other("the executor's spawning thread is gone");
        spawner().send((cmd, reply)).map_err(|_| gone())?;
        let child = answer.recv().map_err(|_| gone())??;
        owned.insert(child.id() as libc::pid_t);
        Ok(child)
    }

    /// The caller has collected `pid`.
    pub fn release(&self, pid: libc::pid_t) {
        self.owned().remove(&pid);
    }

    /// Collects every exited child of this process that nobody waits for; returns how many.
    pub fn reap_orphans(&self) -> usize {
        self.reap_among(exited_children(std::process::id() as libc::pid_t))
    }

    /// Collects those of `exited` (exited children) that nobody waits for.
    fn reap_among(&self, exited: impl IntoIterator<Item = libc::pid_t>) -> usize {
        let owned = self.owned();
        let mut reaped = 0;
        for pid in exited {
            if owned.contains(&pid) {
                continue;
            }
            let mut status = 0;
            // SAFETY: a plain wait for one pid that is our exited child.
            if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                reaped += 1;
            }
        }
        reaped
    }

    /// Reaps orphans whenever a child exits (SIGCHLD), for the life of the process.
    pub fn run(self: std::sync::Arc<Self>) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        Ok(tokio::spawn(async move {
            while signals.recv().await.is_some() {
                let n = self.reap_orphans();
                if n > 0 {
                    tracing::debug!(reaped = n, "collected orphaned processes");
                }
            }
        }))
    }
}

/// A command to spawn and where to send the outcome.
type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The thread that spawns every child the executor waits for, started on first use and never
/// ended (its queue's sender is kept here for the life of the process).
fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("the spawning thread starts");
        tx
    })
}

/// Pids of the zombie children of `parent`, read from `/proc`.
fn exited_children(parent: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses: split at the last `)`.
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let mut fields = rest.split_whitespace();
            let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<libc::pid_t>().ok()));
            state == Some("Z") && ppid == Some(parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn zombie(pid: libc::pid_t) -> bool {
        exited_children(std::process::id() as libc::pid_t).contains(&pid)
    }

    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn orphans_are_collected_and_owned_children_left_to_their_owner() {
        let reaper = Reaper::default();
        let mut owned = reaper.spawn_owned(Command::new("true")).unwrap();
        // Dropped without a wait, as a process the executor never started would be.
        #[allow(clippy::zombie_processes)]
        let orphan = Command::new("true").spawn().unwrap();
        let (owned_pid, orphan_pid) = (owned.id() as libc::pid_t, orphan.id() as libc::pid_t);
        until("both exited", || zombie(owned_pid) && zombie(orphan_pid));
        // Only this test's children: the test harness may run others in this process.
        assert_eq!(reaper.reap_among([owned_pid, orphan_pid]), 1);
        assert!(!zombie(orphan_pid), "the orphan is collected");
        assert!(zombie(owned_pid), "the owned child is left for its owner");
        assert!(owned.wait().unwrap().success(), "its owner still gets its status");
        reaper.release(owned_pid);
        assert!(reaper.owned().is_empty());
    }

    /// A sandbox started by a thread that has ended since lives on: bwrap's
    /// `--die-with-parent` follows the spawning thread, and a spare started on one of tokio's
    /// blocking threads was killed with SIGKILL once the thread retired.
    #[test]
    fn a_sandbox_outlives_the_thread_that_asked_for_it() {
        let reaper = std::sync::Arc::new(Reaper::default());
        let asker = reaper.clone();
        let mut child = std::thread::spawn(move || {
            let mut cmd = Command::new("bwrap");
            cmd.args(["--die-with-parent", "--dev-bind", "/", "/", "sleep", "30"]);
            let child = asker.spawn_owned(cmd).expect("bwrap starts");
            // Long enough for bwrap to have asked for its parent-death signal.
            std::thread::sleep(Duration::from_millis(500));
            child
        })
        .join()
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let status = child.try_wait().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        reaper.release(child.id() as libc::pid_t);
        assert_eq!(status, None, "the sandbox ended with the thread that asked for it");
    }
}
