//! Resident memory of a worker process and everything it started (an `--exec` handler
//! runs as a child, and that is where the memory goes), read from Linux's `/proc`.

use std::collections::HashMap;
use std::fs;

/// Every process's parent, read once from `/proc` and asked many questions.
#[derive(Debug, Default)]
pub struct ProcessTable {
    parents: HashMap<u32, u32>,
}

impl ProcessTable {
    /// Reads `/proc` now (empty where there is none).
    pub fn read() -> Self {
        Self { parents: parents() }
    }

    /// The children of `pid`, their children, and so on.
    pub fn descendants(&self, pid: u32) -> Vec<u32> {
        let mut found = Vec::new();
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for (&child, _) in self.parents.iter().filter(|&(_, &p)| p == parent) {
                found.push(child);
                frontier.push(child);
            }
        }
        found
    }

    /// Resident bytes of `pid` and all its descendants; `None` when `pid` is gone or
    /// `/proc` cannot be read (not Linux).
    pub fn tree_rss(&self, pid: u32) -> Option<u64> {
        let own = rss(pid)?;
        Some(
            own + self
                .descendants(pid)
                .into_iter()
                .filter_map(rss)
                .sum::<u64>(),
        )
    }
}

/// [`ProcessTable::tree_rss`] on a fresh table.
pub fn tree_rss(pid: u32) -> Option<u64> {
    ProcessTable::read().tree_rss(pid)
}

/// [`ProcessTable::descendants`] on a fresh table.
pub fn descendants(pid: u32) -> Vec<u32> {
    ProcessTable::read().descendants(pid)
}

/// Resident bytes of one process (`/proc/<pid>/statm`, second field, in pages).
fn rss(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Every process's parent, from `/proc/<pid>/stat` (the field after the parenthesised
/// command name, which may itself hold spaces and parentheses).
fn parents() -> HashMap<u32, u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 1..];
            let ppid = after_name.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_child_that_holds_memory() {
        // A shell whose child (python) holds 64 MiB it has written to; in a group of its
        // own, so that both go at the end.
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .process_group(0)
            .args(["-c", "python3 -c 'import sys,time; x=b\"a\"*(64<<20); print(1, flush=True); time.sleep(30)'; true"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let shell_alone = rss(child.id()).unwrap();
        let tree = tree_rss(child.id()).unwrap();
        assert_eq!(
            descendants(child.id()).len(),
            1,
            "the shell has one child, python"
        );
        let group = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
        child.wait().unwrap();
        assert!(
            shell_alone < 16 << 20,
            "the shell itself is small: {shell_alone}"
        );
        assert!(tree >= 64 << 20, "the tree holds python's 64 MiB: {tree}");
    }

    #[test]
    fn a_gone_process_has_no_memory() {
        assert_eq!(tree_rss(u32::MAX - 1), None);
    }
}
