//! Directory watches with inotify: the changes below a workspace directory, as a stream or
//! collected for a polling watcher. A watch reaches only directories inside the workspace.

use super::Workspace;
use crate::error::Error;
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::{Mode, OFlags};
use sandbox_core::WorkspacePath;
use sandbox_protocol::{ErrorCode, FileKind, WatchEvent, WatchEventKind, WatchRequest, WatcherInfo};
use std::collections::{HashMap, VecDeque};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most watches (streams and polling watchers together) an executor keeps at once.
pub const MAX_WATCHES: usize = 16;
/// Most events a watch holds before its reader takes them; later ones are dropped and an
/// `overflow` event says so.
const MAX_BUFFERED: usize = 4096;
/// Most directories one recursive watch follows.
const MAX_DIRS: usize = 4096;
/// A polling watcher not polled for this long is stopped.
const POLL_IDLE: Duration = Duration::from_secs(600);
/// How often the reading thread checks whether its watch was dropped.
const STOP_CHECK_MS: i32 = 200;

const WATCH_FLAGS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::EXCL_UNLINK);

/// Events waiting for their reader.
#[derive(Default)]
struct Buffer {
    events: VecDeque<WatchEvent>,
    /// Events were dropped since the last read.
    lost: bool,
    /// No more events will come.
    ended: bool,
}

/// What the reading thread and the watch's holder share.
#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    ready: Notify,
    stop: AtomicBool,
}

impl Shared {
    fn push(&self, ev: WatchEvent) {
        let mut b = self.buffer.lock().expect("watch buffer");
        if b.events.back() == Some(&ev) {
            return;
        }
        if b.events.len() >= MAX_BUFFERED {
            b.lost = true;
        } else {
            b.events.push_back(ev);
        }
        drop(b);
        self.ready.notify_one();
    }

    /// Says that no more events come: `end` is the last one, past the bound if need be.
    fn end(&self) {
        let mut b = self.buffer.lock().expect("watch buffer");
        if !b.ended {
            b.ended = true;
            b.events.push_back(WatchEvent::End);
        }
        drop(b);
        self.ready.notify_one();
    }
}

/// One place in the executor's count of live watches, given back on drop.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running watch; dropping it stops it.
pub struct Watch {
    shared: Arc<Shared>,
    _slot: Slot,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

impl Watch {
    /// The events since the last call, oldest first (an `overflow` where some were lost, and
    /// `end` last once, when the watched directory is gone).
    pub fn take(&self) -> Vec<WatchEvent> {
        let mut b = self.shared.buffer.lock().expect("watch buffer");
        let mut out: Vec<WatchEvent> = b.events.drain(..).collect();
        if std::mem::take(&mut b.lost) {
            // Before `end`, if that is last.
            let at = out.len() - usize::from(out.last() == Some(&WatchEvent::End));
            out.insert(at, WatchEvent::Overflow);
        }
        out
    }

    /// Waits for events and takes them; empty once the watch has ended and everything was taken.
    pub async fn next_batch(&self) -> Vec<WatchEvent> {
        loop {
            let notified = self.shared.ready.notified();
            {
                let b = self.shared.buffer.lock().expect("watch buffer");
                if !b.events.is_empty() || b.lost {
                    drop(b);
                    return self.take();
                }
                if b.ended {
                    return Vec::new();
                }
            }
            notified.await;
        }
    }
}

/// The inotify instance of one watch and the directories it follows.
struct Inotify {
    fd: OwnedFd,
    ws: Arc<Workspace>,
    /// The watched directory.
    base: WorkspacePath,
    recursive: bool,
    /// Each watch descriptor's directory, relative to `base` (`""` for `base` itself).
    dirs: HashMap<i32, String>,
    root_wd: i32,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

fn watch_error(e: rustix::io::Errno, path: &str) -> Error {
    match e {
        rustix::io::Errno::MFILE | rustix::io::Errno::NFILE | rustix::io::Errno::NOSPC => Error::new(
            ErrorCode::TooManyWatchers,
            "the kernel's limit on directory watches is reached; stop another watcher",
        ),
        e => Error::from_errno(e, path),
    }
}

impl Inotify {
    /// Starts watching `rel` (below `base`). The directory is opened beneath the workspace
    /// without following a final symlink, and the watch is put on that descriptor, so nothing
    /// outside the workspace is ever watched. Returns `None` once `MAX_DIRS` are followed.
    fn add(&mut self, rel: &str) -> Result<Option<i32>, Error> {
        if self.dirs.len() >= MAX_DIRS {
            return Ok(None);
        }
        let path = WorkspacePath::parse(&join(self.base.as_str(), rel))?;
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        // The watched directory itself may be reached through a symlink that stays inside; the
        // ones below it are never followed.
        let flags = if rel.is_empty() { flags } else { flags | OFlags::NOFOLLOW };
        let dir = self.ws.open_at(&path, flags, Mode::empty())?;
        let link = format!("/proc/self/fd/{}", dir.as_raw_fd());
        let wd = inotify::add_watch(&self.fd, link.as_str(), WATCH_FLAGS)
            .map_err(|e| watch_error(e, path.as_str()))?;
        self.dirs.insert(wd, rel.to_owned());
        Ok(Some(wd))
    }

    /// Follows `rel` and the directories below it; with `report`, each entry found is also
    /// reported as created (it appeared before its directory was watched). Returns false when
    /// directories were left out at `MAX_DIRS`.
    fn add_tree(&mut self, rel: &str, report: Option<&Shared>) -> bool {
        match self.add(rel) {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            // Gone or replaced already: its own events said so.
            Err(_) => return true,
        }
        let Ok(path) = WorkspacePath::parse(&join(self.base.as_str(), rel)) else { return true };
        let Ok(fd) = self.ws.open_dir(&path) else { return true };
        let Ok(entries) = sandbox_safefs::read_dir(fd, std::path::Path::new(path.as_str())) else {
            return true;
        };
        let mut complete = true;
        for (name, st) in entries {
            let Ok(name) = name.into_string() else { continue };
            let child = join(rel, &name);
            if let Some(shared) = report {
                shared.push(WatchEvent::Change { name: child.clone(), kind: WatchEventKind::Create });
            }
            if super::files::kind_of(&st) == FileKind::Directory {
                complete &= self.add_tree(&child, report);
            }
        }
        complete
    }

    /// Stops following the directories at and below `rel`.
    fn forget(&mut self, rel: &str) {
        let prefix = format!("{rel}/");
        let gone: Vec<i32> = self
            .dirs
            .iter()
            .filter(|(_, d)| *d == rel || d.starts_with(&prefix))
            .map(|(wd, _)| *wd)
            .collect();
        for wd in gone {
            self.dirs.remove(&wd);
            let _ = inotify::remove_watch(&self.fd, wd);
        }
    }

    /// Renames the directories at and below `from` to be at and below `to`.
    fn moved(&mut self, from: &str, to: &str) {
        let prefix = format!("{from}/");
        for d in self.dirs.values_mut() {
            if d == from {
                *d = to.to_owned();
            } else if let Some(rest) = d.strip_prefix(&prefix) {
                *d = format!("{to}/{rest}");
            }
        }
    }
}

/// One event as read, owned.
struct Raw {
    wd: i32,
    mask: ReadFlags,
    cookie: u32,
    name: Option<String>,
}

/// Reads what the kernel has queued, waiting up to `STOP_CHECK_MS` for something.
fn read_batch(fd: &OwnedFd, buf: &mut [MaybeUninit<u8>]) -> Result<Vec<Raw>, rustix::io::Errno> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, STOP_CHECK_MS) };
    if n <= 0 {
        return Ok(Vec::new());
    }
    let mut reader = inotify::Reader::new(fd.as_fd(), buf);
    let mut out = Vec::new();
    loop {
        match reader.next() {
            Ok(ev) => out.push(Raw {
                wd: ev.wd(),
                mask: ev.events(),
                cookie: ev.cookie(),
                name: ev.file_name().map(|n| n.to_string_lossy().into_owned()),
            }),
            Err(rustix::io::Errno::AGAIN) => return Ok(out),
            Err(e) => return Err(e),
        }
        if reader.is_buffer_empty() {
            return Ok(out);
        }
    }
}

/// The reading thread: turns inotify events into watch events until the watch is dropped or
/// its directory goes away.
fn run(mut ino: Inotify, shared: Arc<Shared>) {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 << 10];
    while !shared.stop.load(Ordering::Acquire) {
        let batch = match read_batch(&ino.fd, &mut buf) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "reading a directory watch failed");
                break;
            }
        };
        if !handle(&mut ino, &shared, batch) {
            break;
        }
    }
    shared.end();
}

/// Handles one batch of events; false when the watched directory itself is gone.
fn handle(ino: &mut Inotify, shared: &Shared, batch: Vec<Raw>) -> bool {
    // Directories moved away, by cookie, until their arrival (in the same batch) is seen.
    let mut departed: HashMap<u32, String> = HashMap::new();
    let mut alive = true;
    for ev in batch {
        if ev.mask.contains(ReadFlags::QUEUE_OVERFLOW) {
            shared.push(WatchEvent::Overflow);
            continue;
        }
        if ev.wd == ino.root_wd
            && ev.mask.intersects(ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::IGNORED)
        {
            alive = false;
            break;
        }
        if ev.mask.contains(ReadFlags::IGNORED) {
            ino.dirs.remove(&ev.wd);
            continue;
        }
        let (Some(dir), Some(name)) = (ino.dirs.get(&ev.wd), ev.name) else { continue };
        let path = join(dir, &name);
        let is_dir = ev.mask.contains(ReadFlags::ISDIR);
        let kind = if ev.mask.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            WatchEventKind::Create
        } else if ev.mask.contains(ReadFlags::MODIFY) {
            WatchEventKind::Write
        } else if ev.mask.contains(ReadFlags::DELETE) {
            WatchEventKind::Remove
        } else if ev.mask.contains(ReadFlags::MOVED_FROM) {
            WatchEventKind::Rename
        } else if ev.mask.contains(ReadFlags::ATTRIB) {
            WatchEventKind::Chmod
        } else {
            continue;
        };
        shared.push(WatchEvent::Change { name: path.clone(), kind });
        if !(ino.recursive && is_dir) {
            continue;
        }
        let complete = if ev.mask.contains(ReadFlags::MOVED_FROM) {
            departed.insert(ev.cookie, path);
            true
        } else if ev.mask.contains(ReadFlags::MOVED_TO) {
            match departed.remove(&ev.cookie) {
                Some(from) => {
                    ino.moved(&from, &path);
                    true
                }
                None => ino.add_tree(&path, Some(shared)),
            }
        } else if ev.mask.contains(ReadFlags::CREATE) {
            ino.add_tree(&path, Some(shared))
        } else {
            true
        };
        if !complete {
            shared.push(WatchEvent::Overflow);
        }
    }
    // Moved out of the watched tree: no longer followed.
    for from in departed.into_values() {
        ino.forget(&from);
    }
    alive
}

/// Starts watching `req.path`: a directory inside the workspace.
fn start(ws: &Arc<Workspace>, req: &WatchRequest, slot: Slot) -> Result<Watch, Error> {
    let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
        .map_err(|e| watch_error(e, req.path.as_str()))?;
    let mut ino = Inotify {
        fd,
        ws: ws.clone(),
        base: req.path.clone(),
        recursive: req.recursive,
        dirs: HashMap::new(),
        root_wd: -1,
    };
    ino.root_wd = ino.add("")?.ok_or_else(|| Error::internal("no directory could be watched"))?;
    let shared = Arc::new(Shared::default());
    if req.recursive && !ino.add_tree_below_root() {
        shared.push(WatchEvent::Overflow);
    }
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("watch".into())
        .stack_size(256 << 10)
        .spawn(move || run(ino, thread_shared))
        .map_err(|e| Error::internal(format!("starting a watch failed: {e}")))?;
    Ok(Watch { shared, _slot: slot })
}

impl Inotify {
    /// Follows the directories already below the watched one.
    fn add_tree_below_root(&mut self) -> bool {
        let Ok(fd) = self.ws.open_dir(&self.base) else { return true };
        let Ok(entries) = sandbox_safefs::read_dir(fd, std::path::Path::new(self.base.as_str())) else {
            return true;
        };
        let mut complete = true;
        for (name, st) in entries {
            if super::files::kind_of(&st) == FileKind::Directory
                && let Ok(name) = name.into_string()
            {
                complete &= self.add_tree(&name, None);
            }
        }
        complete
    }
}

/// A polling watcher and when it was last polled.
struct Polled {
    info: WatcherInfo,
    watch: Watch,
    polled: Instant,
}

/// The executor's watches: streams handed to their requests, polling watchers kept here by id.
pub struct Watchers {
    ws: Arc<Workspace>,
    live: Arc<AtomicUsize>,
    polled: Mutex<HashMap<String, Polled>>,
    seq: AtomicU64,
}

impl Watchers {
    /// No watches yet, on `ws`.
    pub fn new(ws: Arc<Workspace>) -> Self {
        Watchers { ws, live: Arc::default(), polled: Mutex::default(), seq: AtomicU64::new(1) }
    }

    /// Stops polling watchers nobody polled for a while.
    fn expire(&self) {
        self.polled.lock().expect("watchers").retain(|_, p| p.polled.elapsed() < POLL_IDLE);
    }

    fn slot(&self) -> Result<Slot, Error> {
        self.expire();
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_WATCHES).then_some(n + 1))
            .map_err(|_| {
            Error::new(
                ErrorCode::TooManyWatchers,
                format!("the sandbox has {MAX_WATCHES} directory watches already; stop one first"),
            )
        })?;
        Ok(Slot(self.live.clone()))
    }

    /// A watch whose events its holder reads; it stops when dropped. Blocking.
    pub fn stream(&self, req: &WatchRequest) -> Result<Watch, Error> {
        start(&self.ws, req, self.slot()?)
    }

    /// Starts a polling watcher. Blocking.
    pub fn create(&self, req: &WatchRequest) -> Result<WatcherInfo, Error> {
        let watch = start(&self.ws, req, self.slot()?)?;
        let id = format!("w{}", self.seq.fetch_add(1, Ordering::Relaxed));
        let info = WatcherInfo { id: id.clone(), path: req.path.clone(), recursive: req.recursive };
        let polled = Polled { info: info.clone(), watch, polled: Instant::now() };
        self.polled.lock().expect("watchers").insert(id, polled);
        Ok(info)
    }

    /// The polling watchers.
    pub fn list(&self) -> Vec<WatcherInfo> {
        self.expire();
        let mut all: Vec<_> =
            self.polled.lock().expect("watchers").values().map(|p| p.info.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// A polling watcher's events since its last poll.
    pub fn poll(&self, id: &str) -> Result<Vec<WatchEvent>, Error> {
        self.expire();
        let mut all = self.polled.lock().expect("watchers");
        let p = all.get_mut(id).ok_or_else(|| unknown(id))?;
        p.polled = Instant::now();
        Ok(p.watch.take())
    }

    /// Stops a polling watcher.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        self.polled.lock().expect("watchers").remove(id).map(|_| ()).ok_or_else(|| unknown(id))
    }
}

fn unknown(id: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("watcher {id} is not known"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Watchers) {
        let d = tempfile::tempdir().unwrap();
        let ws = Arc::new(Workspace::open(d.path()).unwrap());
        (d, Watchers::new(ws))
    }

    fn req(path: &str, recursive: bool) -> WatchRequest {
        WatchRequest { path: WorkspacePath::parse(path).unwrap(), recursive }
    }

    fn change(name: &str, kind: WatchEventKind) -> WatchEvent {
        WatchEvent::Change { name: name.into(), kind }
    }

    /// Polls until `want` have all been seen (in order), or fails after a few seconds.
    fn wait_for(w: &Watchers, id: &str, want: &[WatchEvent]) -> Vec<WatchEvent> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        loop {
            seen.extend(w.poll(id).unwrap());
            let mut it = seen.iter();
            if want.iter().all(|x| it.any(|s| s == x)) {
                return seen;
            }
            assert!(Instant::now() < deadline, "wanted {want:?} in order, saw {seen:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn recursive_watch_follows_new_directories_and_renames() {
        use WatchEventKind::*;
        let (d, w) = setup();
        std::fs::create_dir_all(d.path().join("w/old")).unwrap();
        let id = w.create(&req("w", true)).unwrap().id;
        std::fs::write(d.path().join("w/a.txt"), "1").unwrap();
        std::fs::write(d.path().join("w/old/b"), "1").unwrap();
        std::fs::create_dir_all(d.path().join("w/new/deeper")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(d.path().join("w/new/deeper/c"), "1").unwrap();
        std::fs::rename(d.path().join("w/a.txt"), d.path().join("w/new/a2.txt")).unwrap();
        std::fs::rename(d.path().join("w/new"), d.path().join("w/moved")).unwrap();
        std::fs::write(d.path().join("w/moved/deeper/c"), "22").unwrap();
        std::fs::remove_file(d.path().join("w/old/b")).unwrap();
        wait_for(
            &w,
            &id,
            &[
                change("a.txt", Create),
                change("a.txt", Write),
                change("old/b", Write),
                change("new", Create),
                change("new/deeper/c", Create),
                change("a.txt", Rename),
                change("new/a2.txt", Create),
                change("new", Rename),
                change("moved", Create),
                change("moved/deeper/c", Write),
                change("old/b", Remove),
            ],
        );
        // Not recursive: only the directory's own entries.
        let flat = w.create(&req("w", false)).unwrap().id;
        std::fs::write(d.path().join("w/moved/deeper/d"), "1").unwrap();
        std::fs::write(d.path().join("w/top"), "1").unwrap();
        let seen = wait_for(&w, &flat, &[change("top", Create)]);
        assert!(!seen.contains(&change("moved/deeper/d", Create)), "{seen:?}");
        // The watched directory going away ends the watch.
        std::fs::remove_dir_all(d.path().join("w")).unwrap();
        wait_for(&w, &id, &[WatchEvent::End]);
        w.remove(&id).unwrap();
        assert_eq!(w.poll(&id).unwrap_err().code, ErrorCode::NotFound);
    }

    #[test]
    fn watches_stay_inside_and_are_capped() {
        let outside = tempfile::tempdir().unwrap();
        let (d, w) = setup();
        std::os::unix::fs::symlink("/", d.path().join("root")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        std::fs::write(d.path().join("file"), "x").unwrap();
        assert_eq!(w.create(&req("root", false)).unwrap_err().code, ErrorCode::InvalidPath);
        assert_eq!(w.create(&req("out", true)).unwrap_err().code, ErrorCode::InvalidPath);
        assert_eq!(w.create(&req("missing", false)).unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(w.create(&req("file", false)).unwrap_err().code, ErrorCode::NotADirectory);
        // A recursive watch of the workspace does not descend through the links.
        let id = w.create(&req("", true)).unwrap().id;
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::write(d.path().join("inside"), "i").unwrap();
        let seen = wait_for(&w, &id, &[change("inside", WatchEventKind::Create)]);
        assert!(
            seen.iter().all(|e| !matches!(e, WatchEvent::Change { name, .. } if name.contains("secret")))
        );
        let mut held = Vec::new();
        for _ in 1..MAX_WATCHES {
            held.push(w.stream(&req("", false)).unwrap());
        }
        assert_eq!(w.create(&req("", false)).unwrap_err().code, ErrorCode::TooManyWatchers);
        held.pop();
        w.create(&req("", false)).unwrap();
    }
}
