//! The spool directory and the files in it, opened safely.
//!
//! - The directory is created `0700`; an existing one must be a real directory (not a symlink)
//!   owned by the current user, and loses any group/other permission bits it had.
//! - Files are created `0600` and always opened with `O_NOFOLLOW`: a symlink in place of a spool
//!   file is refused, never followed.
//! - New segment files appear atomically: written as `NAME.tmp`, synced, renamed into place, and
//!   the directory synced.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::SpoolError;

pub const LEDGER: &str = "ledger";
pub const CURSOR: &str = "cursor";
pub const FLUSH_LEASE: &str = "flush.lock";
pub const DELIVERY_STATE: &str = "delivery";
const SEGMENT_SUFFIX: &str = ".seg";
const TMP_SUFFIX: &str = ".tmp";

/// A temporary file of ours: `<segment>.tmp`.
fn is_our_tmp(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .is_some_and(|stem| parse_segment_name(OsStr::new(stem)).is_some())
}

pub fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The id in a segment's file name. Ids from 2^63 up are not ours (ids count up from 1 by one
/// per segment): such a name is ignored, so that no id arithmetic can overflow.
pub fn parse_segment_name(name: &OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
        .filter(|&id| id < MAX_ID)
}

/// The first segment id that is not ours.
const MAX_ID: u64 = 1 << 63;

/// What a listing does with the `.tmp` files that a process dying mid-rotation leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Remove them: only under the append lock, where no rotation is under way.
    Remove,
    /// Leave them.
    Keep,
}

/// A checked spool directory.
#[derive(Debug)]
pub struct SpoolDir {
    path: PathBuf,
    /// Kept open so that it can be fsync'd after renames and unlinks.
    handle: File,
}

impl SpoolDir {
    /// Opens `path`, creating it (and its parents) if needed.
    ///
    /// # Errors
    ///
    /// [`SpoolError::Symlink`], [`SpoolError::NotADirectory`] and [`SpoolError::ForeignOwner`]
    /// for a path that is not ours to use; [`SpoolError::Io`] otherwise.
    pub fn open(path: &Path) -> Result<SpoolDir, SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err)?;
        }
        match DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(e)),
        }
        check_private_dir(path)?;
        let handle = open_nofollow(path, OpenOptions::new().read(true), libc::O_DIRECTORY)?;
        Ok(SpoolDir {
            path: path.to_owned(),
            handle,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens (creating if absent) one of the spool's small read-write files.
    pub fn open_rw(&self, name: &str) -> Result<File, SpoolError> {
        open_nofollow(
            &self.join(name),
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600),
            0,
        )
    }

    /// Opens an existing file read-only, refusing symlinks.
    pub fn open_read(&self, path: &Path) -> Result<Option<File>, SpoolError> {
        existing(open_nofollow(path, OpenOptions::new().read(true), 0))
    }

    /// Opens an existing segment for writing, refusing symlinks. `None` when it is gone.
    pub fn open_write(&self, path: &Path) -> Result<Option<File>, SpoolError> {
        existing(open_nofollow(
            path,
            OpenOptions::new().read(true).write(true),
            0,
        ))
    }

    /// Creates `name` with `contents`, atomically: it either appears whole or not at all.
    /// With `durable`, the file and the directory entry are on disk when this returns.
    pub fn create_atomic(
        &self,
        name: &str,
        contents: &[u8],
        durable: bool,
    ) -> Result<File, SpoolError> {
        let target = self.join(name);
        let tmp = self.join(&format!("{name}{TMP_SUFFIX}"));
        let io_err = |source| SpoolError::Io {
            path: target.clone(),
            source,
        };
        // A leftover from a writer that died here is ours to replace: we hold the append lock.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
            _ => {}
        }
        let file = open_nofollow(
            &tmp,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600),
            0,
        )?;
        use std::io::Write;
        let written = (&file)
            .write_all(contents)
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(e));
        }
        if fs::symlink_metadata(&target).is_ok() {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "segment file already exists",
            )));
        }
        fs::rename(&tmp, &target).map_err(io_err)?;
        if durable {
            self.sync()?;
        }
        Ok(file)
    }

    /// Makes renames and unlinks in the directory durable.
    pub fn sync(&self) -> Result<(), SpoolError> {
        self.handle.sync_all().map_err(|source| SpoolError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Ids of the segment files in `dir` (the spool or its quarantine), sorted. Anything else
    /// there, including symlinks under segment names, is ignored; leftover `.tmp` files are
    /// removed or kept as `leftovers` says.
    pub fn list_segments(&self, dir: &Path, leftovers: Leftovers) -> Result<Vec<u64>, SpoolError> {
        let io_err = |source| SpoolError::Io {
            path: dir.to_owned(),
            source,
        };
        let Some(entries) = read_dir_nofollow(dir)? else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            if let Some(id) = parse_segment_name(&name) {
                // A symlink or anything else not a plain file is never followed or read.
                if !entry.file_type().map_err(io_err)?.is_file() {
                    tracing::warn!(path = %entry.path().display(), "not a regular file; ignoring it");
                    continue;
                }
                ids.push(id);
            } else if leftovers == Leftovers::Remove && name.to_str().is_some_and(is_our_tmp) {
                let _ = fs::remove_file(entry.path());
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// The directory of an area.
    pub fn area_dir(&self, area: Area) -> PathBuf {
        self.join(area.name())
    }

    /// Creates an area's directory (`0700`) if needed (made durable when `durable`).
    pub fn ensure_area(&self, area: Area, durable: bool) -> Result<PathBuf, SpoolError> {
        let dir = self.area_dir(area);
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) if durable => self.sync()?,
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => check_private_dir(&dir)?,
            Err(source) => return Err(SpoolError::Io { path: dir, source }),
        }
        Ok(dir)
    }

    /// Makes renames into an area durable: its directory's entries synced.
    pub fn sync_area(&self, area: Area) -> Result<(), SpoolError> {
        let dir = self.area_dir(area);
        open_nofollow(&dir, OpenOptions::new().read(true), libc::O_DIRECTORY)?
            .sync_all()
            .map_err(|e| SpoolError::io(dir, e))
    }

    /// The plain files of an area with their sizes, oldest first (names sort by age).
    pub fn area_files(&self, area: Area) -> Result<Vec<(PathBuf, u64)>, SpoolError> {
        let dir = self.area_dir(area);
        let Some(entries) = read_dir_nofollow(&dir)? else {
            return Ok(Vec::new());
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SpoolError::io(&dir, e))?;
            let meta = entry
                .metadata()
                .map_err(|e| SpoolError::io(entry.path(), e))?;
            if meta.is_file() {
                files.push((entry.path(), meta.len()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Creates `path` (`0600`, never through a symlink) with `contents`.
    pub fn write_new(&self, path: &Path, contents: &[u8], durable: bool) -> Result<(), SpoolError> {
        let file = open_nofollow(
            path,
            OpenOptions::new().write(true).create_new(true).mode(0o600),
            0,
        )?;
        use std::io::Write;
        (&file)
            .write_all(contents)
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
            .map_err(|e| {
                // No part of a file left behind, uncounted.
                let _ = fs::remove_file(path);
                SpoolError::io(path, e)
            })
    }
}

/// A file that is gone (a segment another process retired, say) as `None`.
fn existing(opened: Result<File, SpoolError>) -> Result<Option<File>, SpoolError> {
    match opened {
        Ok(file) => Ok(Some(file)),
        Err(SpoolError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The entries of `dir` if it is a directory; `None` when it does not exist, or is a symlink
/// or anything else (said once per look: never followed, nothing in it read or deleted).
fn read_dir_nofollow(dir: &Path) -> Result<Option<fs::ReadDir>, SpoolError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            tracing::warn!(path = %dir.display(), "not a directory (a symbolic link?); ignoring it");
            return Ok(None);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SpoolError::io(dir, e)),
    }
    fs::read_dir(dir)
        .map(Some)
        .map_err(|e| SpoolError::io(dir, e))
}

/// Directories beside the segments that keep what must not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Segments in which damage was skipped.
    Quarantine,
    /// Batches the backend rejected as bad data.
    DeadLetter,
}

impl Area {
    pub const ALL: [Area; 2] = [Area::Quarantine, Area::DeadLetter];

    pub fn name(self) -> &'static str {
        match self {
            Area::Quarantine => "quarantine",
            Area::DeadLetter => "deadletter",
        }
    }
}

/// Refuses a symlink, a non-directory, or a directory owned by someone else; tightens the mode.
fn check_private_dir(path: &Path) -> Result<(), SpoolError> {
    let meta = fs::symlink_metadata(path).map_err(|source| SpoolError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(SpoolError::Symlink {
            path: path.to_owned(),
        });
    }
    if !meta.is_dir() {
        return Err(SpoolError::NotADirectory {
            path: path.to_owned(),
        });
    }
    // Safety: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(SpoolError::ForeignOwner {
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|source| {
            SpoolError::Io {
                path: path.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

fn open_nofollow(
    path: &Path,
    opts: &mut OpenOptions,
    extra_flags: i32,
) -> Result<File, SpoolError> {
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | extra_flags)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::ELOOP) {
                SpoolError::Symlink {
                    path: path.to_owned(),
                }
            } else {
                SpoolError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })
}

/// Size of an open file.
pub fn file_len(file: &File, path: &Path) -> Result<u64, SpoolError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|source| SpoolError::Io {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_id_and_round_trip() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(
            parse_segment_name(OsStr::new("00000000000000000042.seg")),
            Some(42)
        );
        assert_eq!(parse_segment_name(OsStr::new("42.seg")), None);
        assert_eq!(
            parse_segment_name(OsStr::new("00000000000000000042.seg.tmp")),
            None
        );
        assert_eq!(parse_segment_name(OsStr::new("notes.txt")), None);
        assert!(segment_name(9) < segment_name(10));
    }
}
