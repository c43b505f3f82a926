//! The few system calls std does not offer in the form the hot path wants.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Size and link count of an open file. Unlike `File::metadata`, this asks for nothing else:
/// requesting timestamps can make the next write update the inode through the journal.
pub fn size_and_links(file: &File) -> io::Result<(u64, u32)> {
    // Safety: an all-zero `statx` is a valid value of a plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // Safety: the fd is open for the duration of the call, the path is a valid empty C string
    // (AT_EMPTY_PATH makes statx use the fd itself), and `stx` is a valid out-pointer.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_SIZE | libc::STATX_NLINK,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((stx.stx_size, stx.stx_nlink))
}

/// Writes `parts` back to back at `offset`, with one `pwritev` when the kernel takes it all.
pub fn write_all_at_vectored(file: &File, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    while !parts.is_empty() {
        let iov: Vec<libc::iovec> = parts
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // Safety: every iovec points into a live borrowed slice of the stated length, and the
        // kernel only reads from them; the fd is open for the duration of the call.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                off,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            if n >= parts[0].len() {
                n -= parts[0].len();
                parts.remove(0);
            } else {
                parts[0] = &parts[0][n..];
                n = 0;
            }
        }
    }
    Ok(())
}

/// This boot of the machine (0 where the kernel does not say): page-cache state that was not
/// synced survives a process crash but not a reboot.
pub fn boot_id() -> u128 {
    static BOOT: OnceLock<u128> = OnceLock::new();
    *BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .and_then(|s| u128::from_str_radix(&s.trim().replace('-', ""), 16).ok())
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn vectored_writes_land_back_to_back() {
        let f = tempfile::tempfile().unwrap();
        write_all_at_vectored(&f, &[b"head", b"", b"payload"], 3).unwrap();
        let mut b = [0u8; 14];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"\0\0\0headpayload");
        assert_eq!(size_and_links(&f).unwrap(), (14, 0));
    }
}
