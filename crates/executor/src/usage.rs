//! The resource use of a live sandbox's processes, read from the kernel's counters in `/proc`
//! (never from anything inside the sandbox). A context's cell is charged the difference between
//! two readings; a stateless execution uses bwrap's `wait4` counts instead.

use std::collections::HashMap;

/// CPU time and memory of a process tree at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeUsage {
    /// User and system CPU time of every process in the tree and of every process it has
    /// collected, in milliseconds.
    pub cpu_ms: f64,
    /// The largest peak resident memory (`VmHWM`) of a process in the tree, in MiB.
    pub peak_memory_mb: f64,
}

struct Stat {
    ppid: libc::pid_t,
    cpu_ticks: u64,
}

/// Reads `/proc/<pid>/stat`: the parent, and utime + stime + cutime + cstime.
fn stat(pid: libc::pid_t) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses: split at the last `)`.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat { ppid: fields.get(1)?.parse().ok()?, cpu_ticks: num(11)? + num(12)? + num(13)? + num(14)? })
}

fn peak_kib(pid: libc::pid_t) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmHWM:")?.split_whitespace().next()?.parse().ok())
}

/// The use of `root` and all its descendants. Each process that ended and was collected is
/// counted in its collector's `cutime`/`cstime`, so everything that ever ran in the tree counts
/// once.
pub fn tree_usage(root: libc::pid_t) -> TreeUsage {
    let Ok(entries) = std::fs::read_dir("/proc") else { return TreeUsage::default() };
    let mut children: HashMap<libc::pid_t, Vec<libc::pid_t>> = HashMap::new();
    let mut ticks: HashMap<libc::pid_t, u64> = HashMap::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok()) {
        if let Some(s) = stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
            ticks.insert(pid, s.cpu_ticks);
        }
    }
    let mut usage = TreeUsage::default();
    let mut total_ticks = 0;
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let Some(t) = ticks.get(&pid) else { continue };
        total_ticks += t;
        let peak = peak_kib(pid).unwrap_or(0) as f64 / 1024.0;
        usage.peak_memory_mb = usage.peak_memory_mb.max(peak);
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    usage.cpu_ms = total_ticks as f64 * 1000.0 / hz;
    usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A child that burnt CPU and was collected, and one still running: both count for the
    /// tree, and nothing outside it does.
    #[test]
    fn counts_the_whole_tree_and_what_it_collected() {
        use std::os::unix::process::CommandExt;
        let burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n";
        let script =
            format!("python3 -c '{burn}' && python3 -c '{burn}print(\"ready\", flush=True)\ntime.sleep(30)'");
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
            .unwrap();
        let u = tree_usage(child.id() as libc::pid_t);
        unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait();
        assert_eq!(line, "ready\n");
        assert!(u.cpu_ms >= 550.0, "collected and running CPU time both count: {u:?}");
        assert!(u.peak_memory_mb > 1.0 && u.peak_memory_mb < 200.0, "{u:?}");
        assert_eq!(tree_usage(i32::MAX).cpu_ms, 0.0, "an unknown root uses nothing");
    }
}
