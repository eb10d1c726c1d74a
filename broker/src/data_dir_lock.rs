//! The data dir's exclusive lock: one broker per data dir.
//!
//! Two brokers on one data dir append to the same segment files at their own offsets, and after
//! a restart one broker's acknowledged records are gone. Like Kafka (a `.lock` file in each log
//! dir), the broker takes an exclusive `flock(2)` on `<data-dir>/.lock` before it reads or
//! writes anything else there, and holds it until the process ends.
//!
//! Why `flock` and not the file's existence: the kernel drops the lock when the process dies,
//! however it dies (`kill -9`, OOM killer, power loss), so a stale `.lock` file never keeps a
//! restarted broker out. The file's content (the holder's pid) is only for the error message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data dir (Kafka's name, so operators recognise it).
pub const LOCK_FILE_NAME: &str = ".lock";
/// Most bytes of the lock file and of the holder's command line read for the error message.
const HOLDER_TEXT_BYTES_MAX: u64 = 4096;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "data dir {} is in use by another process ({holder}); two brokers on one data dir \
         overwrite each other's segments and lose acknowledged records, so this one will not \
         start. Stop the other broker or give this one its own --data-dir",
        dir.display()
    )]
    Held {
        /// The data dir.
        dir: PathBuf,
        /// Who holds it, as well as it can be told.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("locking {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Held for the broker's whole life; the kernel releases it when the process exits.
#[derive(Debug)]
pub struct DataDirLock {
    // Never read: holding the open file description is what holds the lock.
    _file: File,
}

impl DataDirLock {
    /// Takes the exclusive lock on `<data_dir>/.lock`, creating the file if needed, and writes
    /// this process's pid into it.
    ///
    /// # Errors
    /// [`LockError::Held`] naming the holder when another process has it; [`LockError::Io`]
    /// when the file cannot be opened or locked at all.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE_NAME);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        // SAFETY: flock on a descriptor we own and keep open; it touches no memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held {
                    dir: data_dir.to_owned(),
                    holder: describe_holder(&mut file),
                });
            }
            return Err(io_error(error));
        }
        // Ours now: record who we are for the next one to read. Not fsynced: after a crash the
        // lock is gone anyway, and the content is only ever a hint in an error message.
        let pid = std::process::id();
        file.set_len(0).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        file.write_all(format!("{pid}\n").as_bytes())
            .map_err(io_error)?;
        Ok(DataDirLock { _file: file })
    }
}

/// "pid N: command line" from the lock file's pid and `/proc`, or what is known of it.
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    if file
        .take(HOLDER_TEXT_BYTES_MAX)
        .read_to_string(&mut text)
        .is_err()
    {
        return "holder unknown: the lock file is unreadable".to_owned();
    }
    // The holder writes its pid just after taking the lock: an empty file is a holder caught
    // in between, or a process other than spate.
    let Ok(pid) = text.trim().parse::<u32>() else {
        return "holder's pid not recorded in the lock file".to_owned();
    };
    match command_line(pid) {
        Some(command) => format!("pid {pid}: {command}"),
        None => format!("pid {pid}"),
    }
}

/// The process's command line with arguments separated by spaces, if it is visible.
fn command_line(pid: u32) -> Option<String> {
    let file = File::open(format!("/proc/{pid}/cmdline")).ok()?;
    let mut raw = Vec::new();
    file.take(HOLDER_TEXT_BYTES_MAX)
        .read_to_end(&mut raw)
        .ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|word| !word.is_empty())
        .map(|word| String::from_utf8_lossy(word).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spate-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_and_names_the_holder() {
        let dir = temp_dir("second");
        let first = DataDirLock::acquire(&dir).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        let error = DataDirLock::acquire(&dir).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, LockError::Held { .. }), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("in use"), "{message}");
        drop(first);
        let _again = DataDirLock::acquire(&dir).expect("free once the holder is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_lock_file_does_not_keep_a_broker_out() {
        let dir = temp_dir("stale");
        std::fs::write(dir.join(LOCK_FILE_NAME), b"999999999\n").unwrap();
        let _lock = DataDirLock::acquire(&dir).expect("nobody holds the flock");
        let content = std::fs::read_to_string(dir.join(LOCK_FILE_NAME)).unwrap();
        assert_eq!(content, format!("{}\n", std::process::id()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_holder_without_a_pid_is_still_reported() {
        let dir = temp_dir("nopid");
        let path = dir.join(LOCK_FILE_NAME);
        let foreign = File::create(&path).unwrap();
        // SAFETY: flock on an fd we own.
        assert_eq!(
            unsafe { libc::flock(foreign.as_raw_fd(), libc::LOCK_EX) },
            0
        );
        let message = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(message.contains("pid not recorded"), "{message}");
        drop(foreign);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
