//! Bounded reads of the files the configuration names (the file itself, CA bundles, listener
//! certificates and keys): regular files only, and never more than a limit, so `/dev/zero`, a
//! FIFO nobody writes to, a directory or a runaway file is refused at once and costs nothing.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest configuration file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// The largest PEM file read (CA bundle, certificate chain, key), in bytes.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// Reads `path`, which must be a regular file of at most `limit` bytes. The error says what
/// the file is instead, or how large, and names it.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let shown = path.display();
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it means nothing for the
    // regular files read below.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        let kind = kind_of(&meta.file_type());
        return Err(format!("{shown} is {kind}, not a regular file"));
    }
    let too_large = || format!("{shown} is larger than {limit} bytes");
    if meta.len() > limit {
        return Err(too_large());
    }
    // The length may be wrong (files in /proc) or grow while read: read one byte past the limit
    // at most, to tell.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("se-read-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    #[test]
    fn regular_files_within_the_limit_only() {
        let d = dir("files");
        let f = d.0.join("ok.pem");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_bounded(&f, 10).unwrap(), b"0123456789");
        let e = read_bounded(&f, 9).unwrap_err();
        assert!(
            e.contains("larger than 9 bytes") && e.contains("ok.pem"),
            "{e}"
        );
        let e = read_bounded(&d.0, 10).unwrap_err();
        assert!(e.contains("a directory, not a regular file"), "{e}");
        let e = read_bounded(&d.0.join("missing"), 10).unwrap_err();
        assert!(e.starts_with("cannot read") && e.contains("missing"), "{e}");
        let e = read_bounded(Path::new("/dev/zero"), MAX_PEM_BYTES).unwrap_err();
        assert!(e.contains("a character device"), "{e}");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let d = dir("fifo");
        let fifo = d.0.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        // Without O_NONBLOCK this open would block for ever: nobody writes to the FIFO.
        let e = read_bounded(&fifo, MAX_CONFIG_BYTES).unwrap_err();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
    }

    #[test]
    fn a_file_whose_size_lies_is_read_up_to_the_limit_only() {
        // /proc files say they are empty and are not.
        let e = read_bounded(Path::new("/proc/self/maps"), 16).unwrap_err();
        assert!(e.contains("larger than 16 bytes"), "{e}");
    }
}
