//! Integration tests for COCO RLE, mask post-processing and .npy I/O,
//! checked against fixtures produced by pycocotools, PyTorch and NumPy.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use rsam::mask::rle::{self, Rle};
use rsam::mask::{upsample_bilinear, BinaryMask};
use rsam::npy::{read_f32 as read_npy_f32, write_f32 as write_npy_f32};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn read_json(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(rel)).expect("read fixture json");
    serde_json::from_str(&text).expect("parse fixture json")
}

/// Asserts `result` is an error whose message contains `needle`.
fn assert_err_contains<T: std::fmt::Debug>(result: rsam::Result<T>, needle: &str) {
    match result {
        Ok(v) => panic!("expected an error containing {needle:?}, got Ok({v:?})"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "error {msg:?} does not contain {needle:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// RLE against pycocotools
// ---------------------------------------------------------------------------

#[test]
fn rle_matches_pycocotools_fixtures() {
    let cases = read_json("rle/cases.json");
    let cases = cases["cases"].as_array().expect("cases array");
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let png = std::fs::read(fixture(&format!("rle/{}", case["png"].as_str().unwrap()))).expect("read png");
        let mask = BinaryMask::from_png(&png).expect("decode png");
        let size: Vec<u32> = case["size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!([mask.height, mask.width], [size[0], size[1]], "{name}: size");

        let rle = mask.to_rle();
        assert_eq!(rle.size, [size[0], size[1]], "{name}: rle size");
        assert_eq!(rle.counts, case["counts"].as_str().unwrap(), "{name}: counts");

        assert_eq!(mask.area(), case["area"].as_u64().unwrap(), "{name}: area");
        let bbox: Vec<f64> = case["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(mask.bbox().to_vec(), bbox, "{name}: bbox");

        let decoded = rle::decode(&rle).expect("decode own rle");
        assert_eq!(decoded, mask.data, "{name}: decode round trip");

        // The RLE also round-trips through its COCO JSON form.
        let json = serde_json::to_string(&rle).unwrap();
        let back: Rle = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rle, "{name}: json round trip");
    }
}

#[test]
fn rle_encode_uses_column_major_runs() {
    // Row-major 2x3:
    //   1 0 0
    //   1 1 0
    // Column-major: 1 1 | 0 1 | 0 0 -> runs [0, 2, 1, 1, 2].
    // Runs 3 and 4 are delta-coded against runs 1 and 2: 1-2 = -1, 2-1 = 1.
    // -1 is a single group 0x1f -> '0' + 31 = 'O'.
    let mask = [1, 0, 0, 1, 1, 0];
    let rle = rle::encode(&mask, 2, 3);
    assert_eq!(rle.size, [2, 3]);
    assert_eq!(rle.counts, "021O1");
    assert_eq!(rle::decode(&rle).unwrap(), mask.to_vec());
}

#[test]
fn rle_decode_rejects_bad_input() {
    let rle = |h, w, counts: &str| Rle {
        size: [h, w],
        counts: counts.to_string(),
    };
    // Runs sum to 5 but the mask has 6 pixels.
    assert_err_contains(rle::decode(&rle(2, 3, "5")), "sum to 5");
    // Runs sum past the mask.
    assert_err_contains(rle::decode(&rle(2, 3, "61")), "sum to 7");
    // Empty counts for a non-empty size.
    assert_err_contains(rle::decode(&rle(2, 2, "")), "sum to 0");
    // Characters outside '0'..='o'.
    assert_err_contains(rle::decode(&rle(2, 3, "6 ")), "invalid character");
    assert_err_contains(rle::decode(&rle(2, 3, "p")), "invalid character");
    assert_err_contains(rle::decode(&rle(2, 3, "é")), "invalid character");
    // A continuation character ('P' = 0x20 set) with nothing after it.
    assert_err_contains(rle::decode(&rle(2, 3, "P")), "truncated");
    // A value longer than any 64-bit encoder writes.
    assert_err_contains(rle::decode(&rle(2, 3, &"P".repeat(13))), "too large");
    // A delta that makes a run negative: runs [1, 1, 1, 1-2 = -1 ...].
    assert_err_contains(rle::decode(&rle(2, 3, "111N")), "invalid length");
    // Zero-sized masks decode to nothing.
    assert_eq!(rle::decode(&rle(0, 0, "")).unwrap(), Vec::<u8>::new());
    assert_eq!(rle::decode(&rle(0, 5, "0")).unwrap(), Vec::<u8>::new());
}

// ---------------------------------------------------------------------------
// Binary masks
// ---------------------------------------------------------------------------

#[test]
fn mask_from_logits_area_bbox_png() {
    // 3x4 logits; foreground strictly above zero.
    #[rustfmt::skip]
    let logits = [
        -1.0, 0.0,  0.5, -2.0,
        -1.0, 3.0,  f32::NAN, -2.0,
        -1.0, -0.1, 0.1, -2.0,
    ];
    let mask = BinaryMask::from_logits(&logits, 3, 4);
    assert_eq!(mask.data, vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0]);
    assert_eq!(mask.area(), 3);
    assert_eq!(mask.bbox(), [1.0, 0.0, 2.0, 3.0]);

    let png = mask.to_png();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let back = BinaryMask::from_png(&png).unwrap();
    assert_eq!(back, mask);
    // The PNG holds 0 and 255, as a viewer expects.
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    assert_eq!(img.get_pixel(2, 0).0, [255]);
    assert_eq!(img.get_pixel(0, 0).0, [0]);

    let empty = BinaryMask::from_logits(&[-1.0; 6], 2, 3);
    assert_eq!(empty.area(), 0);
    assert_eq!(empty.bbox(), [0.0; 4]);
}

#[test]
fn mask_from_png_handles_other_layouts() {
    // RGB: foreground where the first (red) channel is nonzero.
    let mut rgb = image::RgbImage::new(3, 2);
    rgb.put_pixel(0, 0, image::Rgb([7, 0, 0]));
    rgb.put_pixel(1, 1, image::Rgb([0, 200, 0]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageRgb8(rgb)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    let m = BinaryMask::from_png(&bytes).unwrap();
    assert_eq!((m.width, m.height), (3, 2));
    assert_eq!(m.data, vec![1, 0, 0, 0, 0, 0]);

    // 16-bit greyscale with alpha: a value of 1 (of 65535) is foreground.
    let mut la = image::ImageBuffer::<image::LumaA<u16>, Vec<u16>>::new(2, 1);
    la.put_pixel(1, 0, image::LumaA([1, 0]));
    let mut bytes = Vec::new();
    image::DynamicImage::ImageLumaA16(la)
        .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    assert_eq!(BinaryMask::from_png(&bytes).unwrap().data, vec![0, 1]);

    // Palette: the first channel is the red of the palette colour.
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 3, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![0, 0, 0, 255, 255, 255, 0, 9, 0]);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0, 1, 2]).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(BinaryMask::from_png(&bytes).unwrap().data, vec![0, 1, 0]);

    // 1-bit greyscale (packed pixels).
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 4, 1);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0b1010_0000]).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(BinaryMask::from_png(&bytes).unwrap().data, vec![1, 0, 1, 0]);

    // Not a PNG at all.
    assert_err_contains(BinaryMask::from_png(b"GIF89a...."), "PNG");
}

// ---------------------------------------------------------------------------
// Bilinear upsampling against hand computation and PyTorch
// ---------------------------------------------------------------------------

#[test]
fn upsample_identity_when_sizes_match() {
    let src: Vec<f32> = (0..12).map(|i| i as f32 * 0.37 - 1.0).collect();
    assert_eq!(upsample_bilinear(&src, 3, 4, 3, 4), src);
}

#[test]
fn upsample_2x2_to_4x4_by_hand() {
    // Input [[0, 1], [2, 3]]. With scale 0.5 the source coordinates of
    // outputs 0..4 are -0.25 (clamped to 0), 0.25, 0.75, 1.25 (i0 = 1, no
    // right neighbour), so the per-axis weights of the second pixel are
    // 0, 0.25, 0.75, 1.
    let src = [0.0, 1.0, 2.0, 3.0];
    let out = upsample_bilinear(&src, 2, 2, 4, 4);
    let t = [0.0f32, 0.25, 0.75, 1.0];
    // value = (1 - ty) * row0(x) + ty * row1(x), row0(x) = tx, row1 = 2 + tx.
    let mut expected = Vec::new();
    for &ty in &t {
        for &tx in &t {
            expected.push((1.0 - ty) * tx + ty * (2.0 + tx));
        }
    }
    assert_eq!(&out[..4], &[0.0, 0.25, 0.75, 1.0]);
    assert_eq!(&out[12..], &[2.0, 2.25, 2.75, 3.0]);
    for (o, e) in out.iter().zip(&expected) {
        assert!((o - e).abs() < 1e-6, "{out:?} vs {expected:?}");
    }
}

#[test]
fn upsample_does_not_panic_on_inconsistent_shapes() {
    // Short input reads as zeros; empty input gives zeros.
    assert_eq!(upsample_bilinear(&[1.0], 1, 2, 1, 4).len(), 4);
    assert_eq!(upsample_bilinear(&[], 0, 0, 2, 2), vec![0.0; 4]);
    assert!(upsample_bilinear(&[1.0], 1, 1, 0, 5).is_empty());
}

fn tensor_f32(t: &Tensor) -> (Vec<usize>, Vec<f32>) {
    (t.dims().to_vec(), t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
}

#[test]
fn upsample_matches_pytorch_fixture() {
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(fixture("rsam-tiny/expected.safetensors"), &Device::Cpu)
            .expect("load expected.safetensors");
    let cases = read_json("rsam-tiny/cases.json");
    let cases = cases["cases"].as_array().unwrap();

    for index in [0u64, 10, 12] {
        let (low_shape, low) = tensor_f32(&tensors[&format!("case{index}.low_res_logits")]);
        let (orig_shape, orig) = tensor_f32(&tensors[&format!("case{index}.orig_logits")]);
        assert_eq!(low_shape, [1, 1, 32, 32]);
        let (h, w) = (orig_shape[2], orig_shape[3]);

        let up = upsample_bilinear(&low, 32, 32, h, w);
        assert_eq!(up.len(), orig.len());
        let max_diff = up.iter().zip(&orig).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let exact = up.iter().zip(&orig).filter(|(a, b)| a == b).count();
        eprintln!(
            "case{index}: {h}x{w}, max abs diff {max_diff:e}, {exact}/{} bit-exact",
            up.len()
        );
        assert!(max_diff <= 1e-4, "case{index}: max abs diff {max_diff}");
        // The arithmetic mirrors PyTorch's (fused multiply-adds included),
        // so every value should in fact be identical.
        assert_eq!(exact, up.len(), "case{index}: not bit-identical to PyTorch");

        let case = cases
            .iter()
            .find(|c| c["index"].as_u64() == Some(index))
            .expect("case in cases.json");
        // orig_size_wh is [width, height].
        let wh = case["orig_size_wh"].as_array().unwrap();
        assert_eq!(
            [wh[0].as_u64().unwrap() as usize, wh[1].as_u64().unwrap() as usize],
            [w, h]
        );
        let mask = BinaryMask::from_logits(&up, h as u32, w as u32);
        assert_eq!(
            mask.area(),
            case["mask_area_orig"].as_u64().unwrap(),
            "case{index}: mask area"
        );
    }
}

// ---------------------------------------------------------------------------
// .npy files
// ---------------------------------------------------------------------------

/// `numpy.save` of `np.array([[[[-0.25, 0.25], [0.75, 1.25]]]], np.float32)`
/// (NumPy 2.4), byte for byte.
const NUMPY_1X1X2X2: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2, 2), }                                                    \n\x00\x00\x80\xbe\x00\x00\x80>\x00\x00@?\x00\x00\xa0?";
/// `numpy.save` of `np.array([1, 2, 3, 4, 5], np.float32)`.
const NUMPY_5: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }                                                            \n\x00\x00\x80?\x00\x00\x00@\x00\x00@@\x00\x00\x80@\x00\x00\xa0@";
/// `numpy.save` of `np.zeros((), np.float32)` (a scalar).
const NUMPY_SCALAR: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (), }                                                              \n\x00\x00\x00\x00";
/// `numpy.save` of `np.array([1.5, -2.0], '<f8')`.
const NUMPY_F8: &[u8] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }                                                            \n\x00\x00\x00\x00\x00\x00\xf8?\x00\x00\x00\x00\x00\x00\x00\xc0";

#[test]
fn npy_reads_numpy_files() {
    let data = [-0.25f32, 0.25, 0.75, 1.25];
    assert_eq!(read_npy_f32(NUMPY_1X1X2X2).unwrap(), (vec![1, 1, 2, 2], data.to_vec()));
    let five = [1.0f32, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(read_npy_f32(NUMPY_5).unwrap(), (vec![5], five.to_vec()));
    assert_eq!(read_npy_f32(NUMPY_SCALAR).unwrap(), (vec![], vec![0.0]));
    assert_eq!(read_npy_f32(NUMPY_F8).unwrap(), (vec![2], vec![1.5, -2.0]));
}

#[test]
fn npy_round_trip() {
    let shape = [1, 1, 32, 32];
    let data: Vec<f32> = (0..1024).map(|i| (i as f32).sin() * 10.0).collect();
    let bytes = write_npy_f32(&shape, &data);
    // The data starts on a 64-byte boundary, as NumPy writes it.
    assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
    assert_eq!(read_npy_f32(&bytes).unwrap(), (shape.to_vec(), data));
    for (shape, values) in [(vec![5], vec![1.0f32, 2.0, 3.0, 4.0, 5.0]), (vec![], vec![0.0])] {
        assert_eq!(read_npy_f32(&write_npy_f32(&shape, &values)).unwrap(), (shape, values));
    }

    // Zero-sized arrays and NaN survive too.
    let bytes = write_npy_f32(&[3, 0], &[]);
    assert_eq!(read_npy_f32(&bytes).unwrap(), (vec![3, 0], vec![]));
    let (_, back) = read_npy_f32(&write_npy_f32(&[1], &[f32::NAN])).unwrap();
    assert!(back[0].is_nan());
}

/// Rebuilds a v1.0 .npy file around a replacement header dict.
fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_reads_format_2_and_3_and_other_writers() {
    // Same file as NUMPY_5 but with a format 2.0 / 3.0 prefix (u32 length).
    let header = &NUMPY_5[10..10 + 0x76];
    let data = &NUMPY_5[10 + 0x76..];
    for major in [2u8, 3] {
        let mut bytes = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
        bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(data);
        let (shape, values) = read_npy_f32(&bytes).unwrap();
        assert_eq!(shape, vec![5]);
        assert_eq!(values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    // Key order, quotes and spacing vary between writers; big-endian data
    // (`astype('>f4')`) reads too.
    let bytes = npy_with_header(
        "{\"shape\":(2,1),\"fortran_order\":False,\"descr\":\"<f4\"}",
        &[0, 0, 128, 63, 0, 0, 0, 64],
    );
    assert_eq!(read_npy_f32(&bytes).unwrap(), (vec![2, 1], vec![1.0, 2.0]));
    let big_endian = npy_with_header(
        "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }",
        &[63, 128, 0, 0, 64, 0, 0, 0],
    );
    assert_eq!(read_npy_f32(&big_endian).unwrap(), (vec![2], vec![1.0, 2.0]));
}

#[test]
fn npy_rejects_bad_files() {
    let four = [0u8; 4];
    let dict = |descr: &str, fortran: &str, shape: &str| {
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
    };

    assert_err_contains(read_npy_f32(b"PK\x03\x04 not numpy"), "bad magic");
    assert_err_contains(read_npy_f32(b""), "bad magic");
    assert_err_contains(read_npy_f32(b"\x93NUMPY"), "malformed header");
    assert_err_contains(read_npy_f32(b"\x93NUMPY\x01\x00"), "malformed header");
    assert_err_contains(read_npy_f32(&NUMPY_5[..40]), "malformed header");

    let mut v4 = NUMPY_5.to_vec();
    v4[6] = 4;
    assert_err_contains(read_npy_f32(&v4), "malformed header");

    let int32 = npy_with_header(&dict("<i4", "False", "(1,)"), &four);
    assert_err_contains(read_npy_f32(&int32), "unsupported dtype '<i4'");

    let f16 = npy_with_header(&dict("<f2", "False", "(2,)"), &four);
    assert_err_contains(read_npy_f32(&f16), "unsupported dtype '<f2'");

    let fortran = npy_with_header(&dict("<f4", "True", "(1,)"), &four);
    assert_err_contains(read_npy_f32(&fortran), "fortran_order");

    // Truncated data and too much data.
    assert_err_contains(
        read_npy_f32(&NUMPY_5[..NUMPY_5.len() - 1]),
        "needs 20 bytes but 19 are present",
    );
    let mut long = NUMPY_5.to_vec();
    long.extend_from_slice(&four);
    assert_err_contains(read_npy_f32(&long), "needs 20 bytes but 24 are present");
    let wrong_shape = npy_with_header(&dict("<f4", "False", "(2, 3)"), &four);
    assert_err_contains(read_npy_f32(&wrong_shape), "needs 24 bytes but 4 are present");

    // Malformed headers.
    let missing = npy_with_header("{'descr': '<f4', 'shape': (1,), }", &four);
    assert_err_contains(read_npy_f32(&missing), "malformed header");
    let negative = npy_with_header(&dict("<f4", "False", "(-1,)"), &four);
    assert_err_contains(read_npy_f32(&negative), "malformed header");
    let garbage = npy_with_header("{'descr': '<f4', 'fortran_order': Maybe}", &four);
    assert_err_contains(read_npy_f32(&garbage), "malformed header");
    let unterminated = npy_with_header("{'descr': '<f4", &four);
    assert_err_contains(read_npy_f32(&unterminated), "malformed header");
    let overflow = npy_with_header(&dict("<f4", "False", "(4294967296, 4294967296, 4294967296)"), &four);
    assert_err_contains(read_npy_f32(&overflow), "too large");
    let not_dict = npy_with_header("(1, 2)", &four);
    assert_err_contains(read_npy_f32(&not_dict), "malformed header");
}
