//! LZW strips and tiles, decoded here rather than by the `tiff` crate.
//!
//! `tiff` 0.11.3 (with any `weezl` 0.1.10..=0.1.12) fails on LZW tiles at
//! the right edge of an image, the usual case for tiled GeoTIFFs and COGs:
//! it reads each row without the tile's padding and then skips the padding
//! in a separate small read, and the last such read ends in "no lzw end code
//! found" (image-rs/image-tiff issue 395, open). Decoding the whole chunk in
//! one `weezl` call, padding included, as libtiff does, avoids that; the
//! predictor and byte order are then undone as libtiff undoes them.

use super::error::{GeoError, GeoResult};

/// What a decoded chunk holds and how it was stored.
#[derive(Clone, Copy, Debug)]
pub(super) struct ChunkCoding {
    /// Bytes of one stored row (padding included): pixels x samples x bytes.
    pub row_bytes: usize,
    /// Samples per pixel in the chunk (1 when planar).
    pub samples_per_pixel: usize,
    pub bytes_per_sample: usize,
    /// TIFF Predictor: 1 none, 2 horizontal differencing, 3 floating point.
    pub predictor: u16,
    /// The file is big-endian ("MM").
    pub big_endian: bool,
}

/// Decodes `compressed` (one strip or tile) into `out`, which must have the
/// chunk's decoded size, then undoes the predictor and the byte order so
/// `out` holds native-endian samples.
pub(super) fn decode_chunk(compressed: &[u8], coding: &ChunkCoding, out: &mut [u8], index: u32) -> GeoResult<()> {
    let filled = inflate(compressed, out).map_err(|e| GeoError::Corrupt(format!("strip or tile {index}: LZW: {e}")))?;
    if filled < out.len() {
        return Err(GeoError::Corrupt(format!(
            "strip or tile {index}: LZW data decodes to {filled} bytes, expected {}",
            out.len()
        )));
    }
    for row in out.chunks_exact_mut(coding.row_bytes) {
        match coding.predictor {
            3 => undo_float_predictor(row, coding),
            2 => {
                to_native(row, coding);
                undo_horizontal_predictor(row, coding);
            }
            _ => to_native(row, coding),
        }
    }
    Ok(())
}

/// LZW-decodes into `out` until it is full (like libtiff, a missing end
/// code is no error); returns the bytes written.
fn inflate(mut compressed: &[u8], out: &mut [u8]) -> Result<usize, weezl::LzwError> {
    let mut decoder = weezl::decode::Configuration::with_tiff_size_switch(weezl::BitOrder::Msb, 8).build();
    let mut filled = 0;
    while filled < out.len() {
        let result = decoder.decode_bytes(compressed, &mut out[filled..]);
        compressed = &compressed[result.consumed_in..];
        filled += result.consumed_out;
        match result.status? {
            weezl::LzwStatus::Ok => {}
            weezl::LzwStatus::Done | weezl::LzwStatus::NoProgress => break,
        }
    }
    Ok(filled)
}

/// Big-endian samples to native order.
fn to_native(row: &mut [u8], coding: &ChunkCoding) {
    if coding.big_endian == cfg!(target_endian = "big") || coding.bytes_per_sample == 1 {
        return;
    }
    for sample in row.chunks_exact_mut(coding.bytes_per_sample) {
        sample.reverse();
    }
}

/// Predictor 2: every sample is stored as the difference to the same
/// sample of the pixel before it (wrapping, in the sample's width).
fn undo_horizontal_predictor(row: &mut [u8], coding: &ChunkCoding) {
    let stride = coding.samples_per_pixel;
    macro_rules! accumulate {
        ($t:ty) => {{
            const N: usize = std::mem::size_of::<$t>();
            let count = row.len() / N;
            for i in stride..count {
                let prev = <$t>::from_ne_bytes(row[(i - stride) * N..][..N].try_into().unwrap_or([0; N]));
                let cur = <$t>::from_ne_bytes(row[i * N..][..N].try_into().unwrap_or([0; N]));
                row[i * N..][..N].copy_from_slice(&cur.wrapping_add(prev).to_ne_bytes());
            }
        }};
    }
    match coding.bytes_per_sample {
        1 => accumulate!(u8),
        2 => accumulate!(u16),
        4 => accumulate!(u32),
        _ => accumulate!(u64),
    }
}

/// Predictor 3: the row's bytes are differenced (stride: samples per pixel)
/// and stored as byte planes, most significant byte first.
fn undo_float_predictor(row: &mut [u8], coding: &ChunkCoding) {
    let stride = coding.samples_per_pixel;
    for i in stride..row.len() {
        row[i] = row[i].wrapping_add(row[i - stride]);
    }
    let planes = row.to_vec();
    let bytes = coding.bytes_per_sample;
    let count = row.len() / bytes;
    for (i, sample) in row.chunks_exact_mut(bytes).enumerate() {
        for (k, b) in sample.iter_mut().enumerate() {
            *b = planes[k * count + i];
        }
        // Now big-endian.
        if cfg!(target_endian = "little") {
            sample.reverse();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coding(predictor: u16, bytes_per_sample: usize, samples_per_pixel: usize, big_endian: bool) -> ChunkCoding {
        ChunkCoding {
            row_bytes: 0,
            samples_per_pixel,
            bytes_per_sample,
            predictor,
            big_endian,
        }
    }

    /// TIFF-flavoured LZW of `data` (weezl's encoder with the size switch
    /// libtiff uses).
    fn lzw(data: &[u8]) -> Vec<u8> {
        weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .encode(data)
            .unwrap()
    }

    #[test]
    fn horizontal_predictor_of_two_16_bit_samples_per_pixel() {
        // Pixels (1, 100), (3, 90), (6, 95) stored as differences per sample.
        let stored: Vec<u16> = vec![1, 100, 2, 65526, 3, 5];
        let mut row: Vec<u8> = stored.iter().flat_map(|v| v.to_ne_bytes()).collect();
        undo_horizontal_predictor(&mut row, &coding(2, 2, 2, false));
        let values: Vec<u16> = row.chunks(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect();
        assert_eq!(values, [1, 100, 3, 90, 6, 95]);
    }

    #[test]
    fn float_predictor_restores_the_samples() {
        let values = [1.5f32, -2.25, 1e-3, 7.0];
        // Encode as libtiff does: byte planes (big-endian), then difference.
        let n = values.len();
        let mut planes = vec![0u8; n * 4];
        for (i, v) in values.iter().enumerate() {
            for (k, b) in v.to_be_bytes().iter().enumerate() {
                planes[k * n + i] = *b;
            }
        }
        for i in (1..planes.len()).rev() {
            planes[i] = planes[i].wrapping_sub(planes[i - 1]);
        }
        undo_float_predictor(&mut planes, &coding(3, 4, 1, false));
        let back: Vec<f32> = planes
            .chunks(4)
            .map(|b| f32::from_ne_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(back, values);
    }

    #[test]
    fn big_endian_samples_become_native() {
        let mut row = 0x1234u16.to_be_bytes().to_vec();
        to_native(&mut row, &coding(1, 2, 1, true));
        assert_eq!(u16::from_ne_bytes([row[0], row[1]]), 0x1234);
    }

    #[test]
    fn whole_chunk_decodes_and_short_data_is_an_error() {
        let data: Vec<u8> = (0..96u32).map(|i| (i * 7 % 13) as u8).collect();
        let c = ChunkCoding {
            row_bytes: 16,
            ..coding(1, 1, 1, false)
        };
        let mut out = vec![0u8; 96];
        decode_chunk(&lzw(&data), &c, &mut out, 0).unwrap();
        assert_eq!(out, data);
        let mut more = vec![0u8; 112];
        let e = decode_chunk(&lzw(&data), &c, &mut more, 5).unwrap_err();
        assert_eq!(
            e.to_string(),
            "corrupt TIFF: strip or tile 5: LZW data decodes to 96 bytes, expected 112"
        );
        let e = decode_chunk(&[0xff, 0xff, 0xff], &c, &mut out, 2).unwrap_err();
        assert!(e.to_string().starts_with("corrupt TIFF: strip or tile 2: LZW"), "{e}");
    }
}
