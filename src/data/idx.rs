//! The IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.
//!
//! Layout (big-endian): magic `00 00 TT DD` (TT the element type, `08` = unsigned byte,
//! the only type image datasets use; DD the number of dimensions), then DD sizes as
//! `u32`, then the elements in row-major order. Images are `[N, H, W]` (one channel),
//! labels `[N]`. A file that starts with the gzip magic `1f 8b` is decompressed first.
//!
//! Every inconsistency is an error that names the file and what is wrong: a wrong magic,
//! an unsupported type, a zero or overflowing dimension, data shorter than the header
//! declares (truncation) or longer (trailing bytes), a corrupt gzip stream (flate2 checks
//! the CRC), image and label counts that disagree, a label outside the classes. The
//! declared size is checked against what the file can hold before anything is allocated,
//! so a hostile header cannot make us reserve gigabytes.

use crate::data::dataset::ImageDataset;
use crate::error::{Error, Result};
use flate2::read::MultiGzDecoder;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The element type code for unsigned bytes.
const UBYTE: u8 = 0x08;

/// Largest expansion of deflate (about 1032:1); bounds what a gzip file can declare.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// A decoded IDX file: its dimensions and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Sizes, outermost first (`[N, H, W]` for images, `[N]` for labels).
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<u8>,
}

fn format_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses the header from `head` (at least 4 bytes); returns the dims and header length.
fn parse_header(head: &[u8], path: &Path) -> Result<(Vec<usize>, usize)> {
    if head.len() < 4 {
        return Err(format_err(
            path,
            format!(
                "IDX file too short: {} bytes, the header alone needs 4",
                head.len()
            ),
        ));
    }
    if head[0] != 0 || head[1] != 0 {
        return Err(format_err(
            path,
            format!(
                "not an IDX file: magic {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 0N",
                head[0], head[1], head[2], head[3]
            ),
        ));
    }
    if head[2] != UBYTE {
        return Err(format_err(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported; image datasets use 0x08 (unsigned byte)",
                head[2]
            ),
        ));
    }
    let ndim = head[3] as usize;
    if ndim == 0 {
        return Err(format_err(path, "IDX header declares 0 dimensions"));
    }
    let header_len = 4 + 4 * ndim;
    if head.len() < header_len {
        return Err(format_err(
            path,
            format!(
                "truncated IDX header: {ndim} dimensions need {header_len} bytes, the file has {}",
                head.len()
            ),
        ));
    }
    let dims = head[4..header_len]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect::<Vec<_>>();
    Ok((dims, header_len))
}

/// Number of elements of `dims`, or an error if it overflows `u64`.
fn element_count(dims: &[usize], path: &Path) -> Result<u64> {
    dims.iter().try_fold(1u64, |acc, &d| {
        acc.checked_mul(d as u64)
            .ok_or_else(|| format_err(path, format!("IDX dimensions {dims:?} overflow")))
    })
}

/// Parses uncompressed IDX bytes; `path` is used in error messages.
pub fn parse(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let (dims, header_len) = parse_header(bytes, path)?;
    let total = element_count(&dims, path)?;
    let have = (bytes.len() - header_len) as u64;
    if have < total {
        return Err(format_err(
            path,
            format!(
                "truncated: the header declares dimensions {dims:?} ({total} bytes of data), the file has {have}"
            ),
        ));
    }
    if have > total {
        return Err(format_err(
            path,
            format!(
                "{} unexpected bytes after the {total} bytes of data declared by dimensions {dims:?}",
                have - total
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header_len..].to_vec(),
    })
}

/// Reads from a gzip stream until `buf` is full or the stream ends; returns bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format_err(
                    path,
                    format!(
                        "corrupt or truncated gzip data after {filled} decompressed bytes: {e}"
                    ),
                ))
            }
        }
    }
    Ok(filled)
}

/// Decompresses and parses gzip-compressed IDX bytes.
fn parse_gzip(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let mut gz = MultiGzDecoder::new(bytes);
    let mut head = [0u8; 4];
    let got = read_full(&mut gz, &mut head, path)?;
    if got < 4 {
        parse_header(&head[..got], path)?;
    }
    let ndim = head[3] as usize;
    let mut full_head = head.to_vec();
    full_head.resize(4 + 4 * ndim, 0);
    let got = read_full(&mut gz, &mut full_head[4..], path)?;
    full_head.truncate(4 + got);
    let (dims, _) = parse_header(&full_head, path)?;
    let total = element_count(&dims, path)?;
    let most = (bytes.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    if total > most {
        return Err(format_err(
            path,
            format!(
                "truncated or corrupt: the header declares dimensions {dims:?} ({total} bytes), more than a {}-byte gzip file can hold",
                bytes.len()
            ),
        ));
    }
    let total = usize::try_from(total)
        .map_err(|_| format_err(path, format!("IDX dimensions {dims:?} are too large")))?;
    let mut data = vec![0u8; total];
    let got = read_full(&mut gz, &mut data, path)?;
    if got < total {
        return Err(format_err(
            path,
            format!(
                "truncated: the header declares dimensions {dims:?} ({total} bytes of data), the gzip stream holds {got}"
            ),
        ));
    }
    let mut extra = [0u8; 1];
    if read_full(&mut gz, &mut extra, path)? > 0 {
        return Err(format_err(
            path,
            format!("unexpected data after the {total} bytes declared by dimensions {dims:?}"),
        ));
    }
    Ok(IdxArray { dims, data })
}

/// Parses IDX bytes, decompressing first if they start with the gzip magic.
pub fn decode(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        parse_gzip(bytes, path)
    } else {
        parse(bytes, path)
    }
}

/// Reads and decodes an IDX file (raw or gzip).
pub fn read(path: &Path) -> Result<IdxArray> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes, path)
}

/// Encodes `data` with `dims` as IDX unsigned bytes (for tools and tests).
pub fn encode(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let n: usize = dims.iter().product();
    if n != data.len() || dims.is_empty() || dims.len() > 255 {
        return Err(Error::shape(
            "idx::encode",
            format!("{n} bytes for dimensions {dims:?}"),
            &[data.len()],
        ));
    }
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        let d = u32::try_from(d)
            .map_err(|_| Error::config("idx::encode", "dims", format!("{d} exceeds u32")))?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(out)
}

/// Encodes as IDX and compresses with gzip (best compression).
pub fn encode_gzip(dims: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    let raw = encode(dims, data)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&raw)
        .and_then(|_| gz.finish())
        .map_err(|source| Error::Io {
            path: PathBuf::from("<gzip encoder>"),
            source,
        })
}

/// Combines decoded image and label arrays into a dataset, checking they agree.
pub fn to_dataset(
    images: IdxArray,
    images_path: &Path,
    labels: IdxArray,
    labels_path: &Path,
    class_names: Vec<String>,
) -> Result<ImageDataset> {
    let [n, h, w] = images.dims[..] else {
        return Err(format_err(
            images_path,
            format!(
                "an image file must have 3 dimensions [N, H, W], this one has {:?}",
                images.dims
            ),
        ));
    };
    let [n_labels] = labels.dims[..] else {
        return Err(format_err(
            labels_path,
            format!(
                "a label file must have 1 dimension [N], this one has {:?}",
                labels.dims
            ),
        ));
    };
    if n == 0 || h == 0 || w == 0 {
        return Err(format_err(
            images_path,
            format!("no images: dimensions are {:?}", images.dims),
        ));
    }
    if n != n_labels {
        return Err(format_err(
            images_path,
            format!(
                "{n} images but {n_labels} labels in {}: the counts must agree",
                labels_path.display()
            ),
        ));
    }
    if let Some((i, &l)) = labels
        .data
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= class_names.len())
    {
        return Err(format_err(
            labels_path,
            format!(
                "label {i} is {l}, outside the {} classes 0..{}",
                class_names.len(),
                class_names.len() - 1
            ),
        ));
    }
    let labels = labels.data.into_iter().map(u32::from).collect();
    ImageDataset::new(images.data, labels, [1, h, w], class_names)
}

/// Loads an image file and a label file (each raw or gzip) into a dataset.
pub fn load(
    images_path: &Path,
    labels_path: &Path,
    class_names: Vec<String>,
) -> Result<ImageDataset> {
    let images = read(images_path)?;
    let labels = read(labels_path)?;
    to_dataset(images, images_path, labels, labels_path, class_names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::numbered_classes;

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn roundtrip_raw_and_gzip() {
        let data: Vec<u8> = (0..24).collect();
        let raw = encode(&[2, 3, 4], &data).unwrap();
        assert_eq!(&raw[..8], &[0, 0, 8, 3, 0, 0, 0, 2]);
        let a = decode(&raw, p()).unwrap();
        assert_eq!(a.dims, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let gz = encode_gzip(&[2, 3, 4], &data).unwrap();
        assert_eq!(decode(&gz, p()).unwrap(), a);
    }

    #[test]
    fn header_errors_name_the_problem() {
        let cases: [(&[u8], &str); 5] = [
            (&[0, 0], "too short"),
            (&[1, 0, 8, 1, 0, 0, 0, 0], "not an IDX file"),
            (&[0, 0, 0x0d, 1, 0, 0, 0, 0], "type 0x0d"),
            (&[0, 0, 8, 0], "0 dimensions"),
            (&[0, 0, 8, 2, 0, 0, 0, 1], "truncated IDX header"),
        ];
        for (bytes, want) in cases {
            let err = decode(bytes, p()).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("x.idx"), "{err}");
        }
    }

    #[test]
    fn short_and_long_data_are_errors() {
        let mut raw = encode(&[2, 2], &[1, 2, 3, 4]).unwrap();
        raw.push(9);
        assert!(decode(&raw, p())
            .unwrap_err()
            .to_string()
            .contains("1 unexpected bytes"));
        raw.truncate(raw.len() - 2);
        assert!(decode(&raw, p())
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut gz_long = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz_long.write_all(&raw).unwrap();
        gz_long.write_all(&[1, 2, 3]).unwrap();
        let gz_long = gz_long.finish().unwrap();
        let err = decode(&gz_long, p()).unwrap_err().to_string();
        assert!(err.contains("unexpected data"), "{err}");
    }

    #[test]
    fn truncated_and_corrupt_gzip_are_errors() {
        let data: Vec<u8> = (0..=255).cycle().take(5000).collect();
        let gz = encode_gzip(&[5000], &data).unwrap();
        for cut in [3, 10, gz.len() / 2, gz.len() - 4, gz.len() - 1] {
            let err = decode(&gz[..cut], p()).unwrap_err().to_string();
            assert!(err.contains("x.idx"), "cut {cut}: {err}");
        }
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        assert!(decode(&flipped, p()).is_err());
        let mut bad_crc = gz.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 1; // CRC32 in the gzip trailer
        let err = decode(&bad_crc, p()).unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn huge_declared_size_fails_before_allocating() {
        let head = [0u8, 0, 8, 3, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0, 9];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&head).unwrap();
        let gz = gz.finish().unwrap();
        let err = decode(&gz, p()).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
        let err = decode(&head, p()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        let overflow = [0u8, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let err = decode(&overflow, p()).unwrap_err().to_string();
        assert!(
            err.contains("truncated") || err.contains("overflow"),
            "{err}"
        );
    }

    #[test]
    fn dataset_checks_counts_shapes_and_labels() {
        let img = |n: usize| IdxArray {
            dims: vec![n, 2, 2],
            data: vec![7; n * 4],
        };
        let lab = |v: Vec<u8>| IdxArray {
            dims: vec![v.len()],
            data: v,
        };
        let (ip, lp) = (Path::new("img.idx"), Path::new("lab.idx"));
        let ok = to_dataset(img(2), ip, lab(vec![0, 1]), lp, numbered_classes(2)).unwrap();
        assert_eq!((ok.len(), ok.shape()), (2, [1, 2, 2]));
        let err = to_dataset(img(3), ip, lab(vec![0, 1]), lp, numbered_classes(2)).unwrap_err();
        assert!(err.to_string().contains("3 images but 2 labels"), "{err}");
        let err = to_dataset(img(2), ip, lab(vec![0, 5]), lp, numbered_classes(2)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("lab.idx") && msg.contains("label 1 is 5"),
            "{msg}"
        );
        let err = to_dataset(
            lab(vec![0, 1]),
            ip,
            lab(vec![0, 1]),
            lp,
            numbered_classes(2),
        );
        assert!(err.unwrap_err().to_string().contains("3 dimensions"));
        let err = to_dataset(img(2), ip, img(2), lp, numbered_classes(2));
        assert!(err.unwrap_err().to_string().contains("1 dimension"));
        let empty = IdxArray {
            dims: vec![0, 2, 2],
            data: vec![],
        };
        let err = to_dataset(empty, ip, lab(vec![]), lp, numbered_classes(2));
        assert!(err.unwrap_err().to_string().contains("no images"));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = read(Path::new("/nonexistent/t.idx")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/t.idx"));
    }
}
