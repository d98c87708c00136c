//! A small writer of `torch.save` files (the zip format of torch >= 1.6), so
//! that tests can build checkpoints of any shape in the format Hugging Face
//! and the official trainings ship: `archive/data.pkl` (a protocol-2 pickle
//! of a dict of `torch._utils._rebuild_tensor_v2(...)` calls whose storages
//! are persistent ids), one `archive/data/N` entry of raw little-endian f32
//! per tensor, and `archive/version`. torch.load reads these files (checked
//! once by hand with torch 2.15); the tests read them with rsam.

use std::io::Write;
use std::path::Path;

/// `(name, shape, values)` of an f32 tensor.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

pub fn write_torch_zip(path: &Path, tensors: &[NamedTensor]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).unwrap();
    zip.write_all(&state_dict_pickle(tensors)).unwrap();
    for (i, (_, _, values)) in tensors.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), stored).unwrap();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        zip.write_all(&bytes).unwrap();
    }
    zip.start_file("archive/version", stored).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn state_dict_pickle(tensors: &[NamedTensor]) -> Vec<u8> {
    let mut p = vec![0x80, 2]; // PROTO 2
    p.push(b'}'); // EMPTY_DICT
    p.push(b'('); // MARK
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        unicode(&mut p, name);
        global(&mut p, "torch._utils", "_rebuild_tensor_v2");
        p.push(b'(');
        // The storage, as a persistent id: ('storage', FloatStorage, key, location, numel).
        p.push(b'(');
        unicode(&mut p, "storage");
        global(&mut p, "torch", "FloatStorage");
        unicode(&mut p, &i.to_string());
        unicode(&mut p, "cpu");
        int(&mut p, values.len());
        p.push(b't');
        p.push(b'Q'); // BINPERSID
        int(&mut p, 0); // storage offset
        ints_tuple(&mut p, shape);
        ints_tuple(&mut p, &contiguous_strides(shape));
        p.push(0x89); // NEWFALSE: requires_grad
        p.push(b'}'); // backward hooks
        p.push(b't');
        p.push(b'R'); // REDUCE
    }
    p.push(b'u'); // SETITEMS
    p.push(b'.'); // STOP
    p
}

fn unicode(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

fn global(p: &mut Vec<u8>, module: &str, name: &str) {
    p.push(b'c');
    p.extend(format!("{module}\n{name}\n").as_bytes());
}

fn int(p: &mut Vec<u8>, v: usize) {
    p.push(b'J');
    p.extend((v as i32).to_le_bytes());
}

fn ints_tuple(p: &mut Vec<u8>, values: &[usize]) {
    p.push(b'(');
    for &v in values {
        int(p, v);
    }
    p.push(b't');
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}
