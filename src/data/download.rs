//! `strata data download NAME`: fetch a dataset into the cache, verified by SHA-256.
//!
//! Each file is fetched from its canonical host into `<file>.part`; an interrupted
//! transfer (dropped connection, Ctrl-C) resumes from where it stopped with an HTTP
//! `Range` request, both on the automatic retries and on the next run. Only when the
//! whole file's SHA-256 matches the catalogue is it renamed to its final name (so a
//! final name always holds verified bytes); on a mismatch the `.part` file is deleted
//! and the error says so. A file already present and verified is not fetched again.
//! CIFAR-10's archive is then unpacked (`tar`, which refuses paths that leave the
//! folder) into `cifar-10-batches-bin/`.
//!
//! The checksums are those published with TensorFlow Datasets' URL checksum files;
//! for MNIST we use the mirror torchvision uses, since the original host often refuses
//! downloads. `--mirror URL` replaces every host (the file name is appended), which is
//! also how the tests point the downloader at a server on 127.0.0.1.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One file of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name in the cache folder.
    pub name: &'static str,
    /// Canonical URL.
    pub url: &'static str,
    /// Expected SHA-256, lowercase hex.
    pub sha256: &'static str,
    /// Expected size in bytes (for the progress bar).
    pub size: u64,
}

/// A downloadable dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteDataset {
    /// Cache folder name (`source::Known::name`).
    pub name: &'static str,
    /// Its files.
    pub files: &'static [RemoteFile],
    /// A `.tar.gz` among the files to unpack, and the folder it must produce.
    pub unpack: Option<(&'static str, &'static str)>,
}

/// Every dataset `strata data download` knows.
pub const CATALOG: &[RemoteDataset] = &[
    RemoteDataset {
        name: "mnist",
        files: &[
            RemoteFile {
                name: "train-images-idx3-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                sha256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                size: 9_912_422,
            },
            RemoteFile {
                name: "train-labels-idx1-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
                sha256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                size: 28_881,
            },
            RemoteFile {
                name: "t10k-images-idx3-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
                sha256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                size: 1_648_877,
            },
            RemoteFile {
                name: "t10k-labels-idx1-ubyte.gz",
                url: "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
                sha256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                size: 4_542,
            },
        ],
        unpack: None,
    },
    RemoteDataset {
        name: "fashion-mnist",
        files: &[
            RemoteFile {
                name: "train-images-idx3-ubyte.gz",
                url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
                sha256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                size: 26_421_880,
            },
            RemoteFile {
                name: "train-labels-idx1-ubyte.gz",
                url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz",
                sha256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                size: 29_515,
            },
            RemoteFile {
                name: "t10k-images-idx3-ubyte.gz",
                url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
                sha256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                size: 4_422_102,
            },
            RemoteFile {
                name: "t10k-labels-idx1-ubyte.gz",
                url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
                sha256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                size: 5_148,
            },
        ],
        unpack: None,
    },
    RemoteDataset {
        name: "cifar10",
        files: &[RemoteFile {
            name: "cifar-10-binary.tar.gz",
            url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            sha256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            size: 170_052_171,
        }],
        unpack: Some(("cifar-10-binary.tar.gz", "cifar-10-batches-bin")),
    },
];

/// The catalogue entry for `name` (a `source::Known` name).
pub fn find(name: &str) -> Option<&'static RemoteDataset> {
    let known = crate::data::source::Known::parse(name)?;
    CATALOG.iter().find(|d| d.name == known.name())
}

/// How to download.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Replace every host: the file name is appended to this base URL. Default: none.
    pub mirror: Option<String>,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Extra attempts after a failed or dropped transfer, each resuming. Default: 3.
    pub retries: u32,
    /// Connect timeout and longest silence while receiving. Default: 30 s.
    pub timeout: Duration,
    /// Pause before retry `k` is `k × backoff`. Default: 1 s.
    pub backoff: Duration,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            mirror: None,
            progress: true,
            retries: 3,
            timeout: Duration::from_secs(30),
            backoff: Duration::from_secs(1),
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn download_err(url: &str, reason: impl Into<String>) -> Error {
    Error::Download {
        url: url.to_string(),
        reason: reason.into(),
    }
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn progress_bar(show: bool, total: u64, label: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// Outcome of one HTTP attempt.
enum Attempt {
    Done,
    /// Worth retrying (transport error, dropped connection, server error).
    Retry(String),
}

/// One attempt: request from the `.part` file's length on, append what arrives.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<Attempt> {
    let offset = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let mut response = match request.call() {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Retry(format!("request failed: {e}"))),
    };
    let status = response.status().as_u16();
    let append = match status {
        206 => {
            let range = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            range.starts_with(&format!("bytes {offset}-"))
        }
        200 => false,
        416 if offset > 0 => return Ok(Attempt::Done), // nothing left: verify what we have
        500..=599 => return Ok(Attempt::Retry(format!("server error HTTP {status}"))),
        _ => {
            return Err(download_err(
                url,
                format!("the server answered HTTP {status}"),
            ))
        }
    };
    let mut file = if append {
        OpenOptions::new().append(true).open(part)
    } else {
        File::create(part)
    }
    .map_err(|e| io_err(part, e))?;
    let start = if append { offset } else { 0 };
    bar.set_position(start);
    if let Some(len) = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        bar.set_length(start + len);
    }
    let mut body = response.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = start;
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                file.write_all(&buf[..n]).map_err(|e| io_err(part, e))?;
                received += n as u64;
                bar.set_position(received);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                file.flush().map_err(|e| io_err(part, e))?;
                return Ok(Attempt::Retry(format!(
                    "connection dropped after {received} bytes ({e})"
                )));
            }
        }
    }
    file.sync_all().map_err(|e| io_err(part, e))?;
    Ok(Attempt::Done)
}

/// Fetches `url` to `dest`, resuming a `.part` file, and checks its SHA-256.
///
/// Returns `false` if `dest` was already there with the right checksum (nothing
/// fetched), `true` if it was downloaded.
pub fn fetch(url: &str, dest: &Path, sha256: &str, options: &DownloadOptions) -> Result<bool> {
    if dest.is_file() {
        if sha256_file(dest)? == sha256 {
            return Ok(false);
        }
        std::fs::remove_file(dest).map_err(|e| io_err(dest, e))?;
    }
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    }
    let part = part_path(dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(options.timeout))
        .timeout_per_read(Some(options.timeout))
        .build()
        .into();
    let label = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = progress_bar(options.progress, 0, &label);
    let mut last_problem = String::new();
    let mut done = false;
    for k in 0..=options.retries {
        if k > 0 {
            std::thread::sleep(options.backoff * k);
        }
        match attempt(&agent, url, &part, &bar)? {
            Attempt::Done => {
                done = true;
                break;
            }
            Attempt::Retry(problem) => last_problem = problem,
        }
    }
    bar.finish_and_clear();
    if !done {
        let kept = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        return Err(download_err(
            url,
            format!(
                "{last_problem}; gave up after {} attempts. {kept} bytes are kept in {} and the next run resumes from there",
                options.retries + 1,
                part.display()
            ),
        ));
    }
    let got = sha256_file(&part)?;
    if got != sha256 {
        std::fs::remove_file(&part).map_err(|e| io_err(&part, e))?;
        return Err(download_err(
            url,
            format!(
                "SHA-256 mismatch: expected {sha256}, got {got}. The partial file {} was deleted; run again (if it persists, the server or a proxy is serving different bytes)",
                part.display()
            ),
        ));
    }
    std::fs::rename(&part, dest).map_err(|e| io_err(dest, e))?;
    Ok(true)
}

/// Unpacks `archive` (`.tar.gz`) into `dir`, which must then contain `expect`.
pub fn unpack_tar_gz(archive: &Path, dir: &Path, expect: &str) -> Result<()> {
    let file = File::open(archive).map_err(|e| io_err(archive, e))?;
    let staging = dir.join(".unpacking");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    }
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&staging)
        .map_err(|e| Error::Format {
            path: archive.to_path_buf(),
            reason: format!("cannot unpack the archive: {e}"),
        })?;
    let produced = staging.join(expect);
    if !produced.is_dir() {
        return Err(Error::Format {
            path: archive.to_path_buf(),
            reason: format!("the archive has no `{expect}` folder"),
        });
    }
    let target = dir.join(expect);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| io_err(&target, e))?;
    }
    std::fs::rename(&produced, &target).map_err(|e| io_err(&target, e))?;
    std::fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))
}

/// Downloads every file of `dataset` into `dir` (and unpacks its archive).
pub fn download_dataset(
    dataset: &RemoteDataset,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<()> {
    for file in dataset.files {
        let url = match &options.mirror {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), file.name),
            None => file.url.to_string(),
        };
        let dest = dir.join(file.name);
        let fetched = fetch(&url, &dest, file.sha256, options)?;
        if options.progress {
            let verb = if fetched {
                "downloaded"
            } else {
                "already present"
            };
            eprintln!("strata: {} {verb}, SHA-256 verified", dest.display());
        }
    }
    if let Some((archive, folder)) = dataset.unpack {
        if !dir.join(folder).is_dir() {
            unpack_tar_gz(&dir.join(archive), dir, folder)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// What the test server does with request number k (0-based).
    #[derive(Clone, Copy)]
    enum Behaviour {
        /// Serve the payload, honouring Range.
        Serve,
        /// Announce the full length, send `n` bytes, then close.
        DropAfter(usize),
        /// Answer 404.
        NotFound,
    }

    /// A one-thread HTTP/1.1 server on 127.0.0.1 that handles `script.len()` requests,
    /// then stops. Returns the base URL and the Range headers it saw.
    fn serve(
        payload: Vec<u8>,
        script: Vec<Behaviour>,
    ) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&ranges);
        std::thread::spawn(move || {
            for behaviour in script {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                seen.lock().unwrap().push(range.map(|r| r.to_string()));
                let mut out = stream;
                let start = range.unwrap_or(0).min(payload.len());
                let body = &payload[start..];
                let head = |status: &str, extra: String| {
                    format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len())
                };
                let status = if range.is_some() {
                    head(
                        "206 Partial Content",
                        format!(
                            "Content-Range: bytes {start}-{}/{}\r\n",
                            payload.len() - 1,
                            payload.len()
                        ),
                    )
                } else {
                    head("200 OK", String::new())
                };
                match behaviour {
                    Behaviour::Serve => {
                        let _ = out.write_all(status.as_bytes());
                        let _ = out.write_all(body);
                    }
                    Behaviour::DropAfter(n) => {
                        let _ = out.write_all(status.as_bytes());
                        let _ = out.write_all(&body[..n.min(body.len())]);
                    }
                    Behaviour::NotFound => {
                        let _ = out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
                let _ = out.flush();
            }
        });
        (base, ranges)
    }

    fn payload() -> Vec<u8> {
        (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn sha(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn quick(retries: u32) -> DownloadOptions {
        DownloadOptions {
            mirror: None,
            progress: false,
            retries,
            timeout: Duration::from_secs(5),
            backoff: Duration::from_millis(10),
        }
    }

    #[test]
    fn downloads_verifies_and_skips_when_present() {
        let data = payload();
        let (base, _) = serve(data.clone(), vec![Behaviour::Serve]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        assert!(fetch(&format!("{base}/f.bin"), &dest, &sha(&data), &quick(0)).unwrap());
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        // The server has stopped: a second call must not need it.
        assert!(!fetch(&format!("{base}/f.bin"), &dest, &sha(&data), &quick(0)).unwrap());
    }

    #[test]
    fn wrong_checksum_is_an_error_and_leaves_nothing() {
        let data = payload();
        let (base, _) = serve(data, vec![Behaviour::Serve]);
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        let err = fetch(&format!("{base}/f.bin"), &dest, &"0".repeat(64), &quick(0)).unwrap_err();
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
        assert!(!dest.exists() && !part_path(&dest).exists());
    }

    #[test]
    fn dropped_connection_resumes_with_range() {
        let data = payload();
        let (base, ranges) = serve(
            data.clone(),
            vec![Behaviour::DropAfter(100_000), Behaviour::Serve],
        );
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        fetch(&format!("{base}/f.bin"), &dest, &sha(&data), &quick(2)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        let ranges = ranges.lock().unwrap().clone();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0], None);
        let resumed_at: usize = ranges[1].as_deref().unwrap().parse().unwrap();
        assert!(resumed_at > 0 && resumed_at <= 100_000, "{resumed_at}");
    }

    #[test]
    fn giving_up_keeps_the_part_file_and_the_next_run_resumes() {
        let data = payload();
        let (base, _) = serve(
            data.clone(),
            vec![Behaviour::DropAfter(50_000), Behaviour::DropAfter(50_000)],
        );
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("f.bin");
        let url = format!("{base}/f.bin");
        let err = fetch(&url, &dest, &sha(&data), &quick(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("connection dropped") && err.contains("resumes"),
            "{err}"
        );
        let kept = std::fs::metadata(part_path(&dest)).unwrap().len();
        assert!(kept >= 50_000, "{kept}");
        let (base2, ranges) = serve(data.clone(), vec![Behaviour::Serve]);
        fetch(&format!("{base2}/f.bin"), &dest, &sha(&data), &quick(0)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), data);
        assert_eq!(ranges.lock().unwrap()[0], Some(kept.to_string()));
    }

    #[test]
    fn http_errors_are_reported() {
        let (base, _) = serve(Vec::new(), vec![Behaviour::NotFound]);
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(
            &format!("{base}/x"),
            &dir.path().join("x"),
            &"0".repeat(64),
            &quick(0),
        );
        assert!(err.unwrap_err().to_string().contains("HTTP 404"));
    }

    #[test]
    fn dataset_download_uses_the_mirror_and_unpacks() {
        // A tar.gz holding cifar-10-batches-bin/x.bin, served as a one-file dataset.
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "cifar-10-batches-bin/x.bin", &b"abc"[..])
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        let archive = gz.finish().unwrap();
        let hash: &'static str = Box::leak(sha(&archive).into_boxed_str());
        let files: &'static [RemoteFile] = Box::leak(Box::new([RemoteFile {
            name: "cifar-10-binary.tar.gz",
            url: "http://unused.invalid/",
            sha256: hash,
            size: 0,
        }]));
        let spec = RemoteDataset {
            name: "cifar10",
            files,
            unpack: Some(("cifar-10-binary.tar.gz", "cifar-10-batches-bin")),
        };
        let (base, _) = serve(archive, vec![Behaviour::Serve]);
        let dir = tempfile::tempdir().unwrap();
        let options = DownloadOptions {
            mirror: Some(base),
            ..quick(0)
        };
        download_dataset(&spec, dir.path(), &options).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("cifar-10-batches-bin/x.bin")).unwrap(),
            b"abc"
        );
        assert!(find("CIFAR-10").is_some() && find("cifar100").is_none());
    }
}
