//! A minimal tar (POSIX ustar) writer: directories and regular files, owned by root, dated
//! 1970, streamed straight into `docker import`.
//!
//! Why by hand: the image is a handful of files, ustar is a 512-byte header per file, and
//! writing it here keeps the image byte-for-byte a function of the files' contents (no host
//! owners or times leak in) without a new dependency or a staging copy of the binary.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// Writes a tar stream to `out`.
#[derive(Debug)]
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> TarWriter<W> {
        TarWriter { out }
    }

    /// A directory entry (`path` without a leading or trailing `/`).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let header = header(&format!("{path}/"), mode, 0, b'5')?;
        self.out.write_all(&header)
    }

    /// A regular file of exactly `size` bytes read from `contents`.
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        contents: &mut dyn Read,
    ) -> io::Result<()> {
        self.out.write_all(&header(path, mode, size, b'0')?)?;
        let copied = io::copy(&mut contents.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::other(format!(
                "{path} shrank while it was being written ({copied} of {size} bytes)"
            )));
        }
        let padding = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
        self.out.write_all(&[0; BLOCK][..padding])
    }

    /// Ends the archive (two zero blocks) and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A ustar header block.
fn header(path: &str, mode: u32, size: u64, kind: u8) -> io::Result<[u8; BLOCK]> {
    let mut block = [0u8; BLOCK];
    let (prefix, name) = split_path(path)?;
    block[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut block[100..108], u64::from(mode & 0o7777))?;
    octal(&mut block[108..116], 0)?; // uid
    octal(&mut block[116..124], 0)?; // gid
    octal(&mut block[124..136], size)?;
    octal(&mut block[136..148], 0)?; // mtime
    block[156] = kind;
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    block[265..269].copy_from_slice(b"root");
    block[297..301].copy_from_slice(b"root");
    block[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    // The checksum is computed with its own field as eight spaces.
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|byte| u64::from(*byte)).sum();
    octal(&mut block[148..155], sum)?;
    block[155] = b' ';
    Ok(block)
}

/// Splits a path into ustar's prefix (up to 155 bytes) and name (up to 100 bytes), at a `/`.
fn split_path(path: &str) -> io::Result<(&str, &str)> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let too_long = || io::Error::other(format!("the path {path} is too long for a tar header"));
    // The name part may not be empty, but a directory's path ends with `/`.
    let search = &path[..path.len() - 1];
    let mut split = None;
    for (index, _) in search.match_indices('/') {
        if index <= 155 && path.len() - index - 1 <= 100 {
            split = Some(index);
            break;
        }
    }
    let index = split.ok_or_else(too_long)?;
    Ok((&path[..index], &path[index + 1..]))
}

/// `value` in octal, zero-padded, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) -> io::Result<()> {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        return Err(io::Error::other(format!(
            "{value} does not fit a tar header field"
        )));
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::process::{Command, Stdio};

    use super::*;

    fn archive() -> Vec<u8> {
        let mut tar = TarWriter::new(Vec::new());
        tar.dir("tmp", 0o1777).unwrap();
        tar.dir("usr/local/bin", 0o755).unwrap();
        let body = b"#!/bin/sh\necho hi\n";
        tar.file("usr/local/bin/hi", 0o755, body.len() as u64, &mut &body[..])
            .unwrap();
        let long = format!("{}/file", "d".repeat(120));
        tar.file(&long, 0o644, 0, &mut io::empty()).unwrap();
        tar.finish().unwrap()
    }

    #[test]
    fn headers_are_valid_ustar() {
        let bytes = archive();
        assert_eq!(bytes.len() % BLOCK, 0);
        let first = &bytes[..BLOCK];
        assert_eq!(&first[..4], b"tmp/");
        assert_eq!(&first[100..107], b"0001777");
        assert_eq!(first[156], b'5');
        let stored = std::str::from_utf8(&first[148..154]).unwrap();
        let mut blank = first.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        let sum: u64 = blank.iter().map(|byte| u64::from(*byte)).sum();
        assert_eq!(u64::from_str_radix(stored, 8).unwrap(), sum);
        // A short file is padded to a block, a short read is an error.
        let mut tar = TarWriter::new(Vec::new());
        assert!(tar.file("x", 0o644, 10, &mut &b"abc"[..]).is_err());
    }

    #[test]
    fn gnu_tar_reads_it() {
        let Ok(mut child) = Command::new("tar")
            .args(["-tvf", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            println!("skipped: no tar here");
            return;
        };
        child.stdin.take().unwrap().write_all(&archive()).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let listing = String::from_utf8(output.stdout).unwrap();
        assert!(listing.contains("drwxrwxrwt root/root"), "{listing}");
        assert!(
            listing.contains("-rwxr-xr-x root/root        18 1970-01-01"),
            "{listing}"
        );
        assert!(
            listing.contains(&format!("{}/file", "d".repeat(120))),
            "{listing}"
        );
    }
}
