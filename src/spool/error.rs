//! Errors of the spool, one enum for opening/reading and one for appending.

use std::io;
use std::path::PathBuf;

/// Opening, reading, acknowledging or inspecting a spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// An I/O error on the named file or directory.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A symlink stands where the spool expects its directory or one of its files.
    #[error("{path} is a symbolic link; refusing to follow it")]
    Symlink { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} is owned by uid {owner}, not by the current user (uid {me}); refusing to use it"
    )]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
    /// Another process holds the flush lease: it is delivering the spool right now.
    #[error("another process is already flushing the spool in {dir}")]
    FlushLeaseHeld { dir: PathBuf },
    /// `ack` was given a record other than the one `next` returned last.
    #[error("acknowledged a record that is not the oldest unacknowledged one")]
    NotNext,
}

impl SpoolError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: path.into(),
            source,
        }
    }

    /// The path is not safe or not ours: a symlink, not a directory, or another user's.
    pub fn is_refused_path(&self) -> bool {
        matches!(
            self,
            SpoolError::Symlink { .. }
                | SpoolError::NotADirectory { .. }
                | SpoolError::ForeignOwner { .. }
        )
    }
}

/// An append was refused. The caller still owns the batch: nothing of it was stored.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The batch could never fit, even in an empty spool.
    #[error(
        "batch of {size} bytes cannot be spooled: the spool is bounded to {max_bytes} bytes \
         ({overhead} bytes of which go to framing and bookkeeping)"
    )]
    TooLarge {
        size: u64,
        max_bytes: u64,
        overhead: u64,
    },
    /// The batch alone has more spans than the span bound allows.
    #[error("batch of {spans} spans cannot be spooled: the spool is bounded to {max_spans} spans")]
    TooManySpans { spans: u64, max_spans: u64 },
    /// The filesystem is full. The spool is unchanged.
    #[error("no space left on the device holding {path}")]
    NoSpace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other failure. The spool is unchanged as far as the failure allowed.
    #[error(transparent)]
    Spool(SpoolError),
    /// Spooling is disabled (`max_bytes = 0`): the batch was dropped, and counted.
    #[error("spooling is disabled (max_bytes = 0): the batch was not stored")]
    Disabled,
}

impl From<SpoolError> for AppendError {
    /// A full disk is [`AppendError::NoSpace`] wherever in the append it was met.
    fn from(e: SpoolError) -> AppendError {
        match e {
            SpoolError::Io { path, source } => AppendError::from_io(path, source),
            other => AppendError::Spool(other),
        }
    }
}

impl AppendError {
    pub(crate) fn from_io(path: impl Into<PathBuf>, source: io::Error) -> AppendError {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            AppendError::NoSpace {
                path: path.into(),
                source,
            }
        } else {
            AppendError::Spool(SpoolError::io(path, source))
        }
    }

    /// The batch will never be accepted, whatever the state of the spool or disk.
    pub fn is_unfit(&self) -> bool {
        matches!(
            self,
            AppendError::TooLarge { .. } | AppendError::TooManySpans { .. }
        )
    }

    /// The disk is full (or the file size limit was hit): retrying later may succeed.
    pub fn is_no_space(&self) -> bool {
        match self {
            AppendError::NoSpace { .. } => true,
            AppendError::Spool(SpoolError::Io { source, .. }) => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::EFBIG) | Some(libc::EDQUOT)
                )
            }
            _ => false,
        }
    }
}
