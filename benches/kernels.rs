//! Criterion benchmarks of the CPU kernels, at the sizes the released
//! configuration (base+ at 800 px) gives them. `cargo bench --bench
//! kernels` (BENCHMARKS.md); `cargo bench --bench kernels -- attention`
//! runs one group.

use candle_core::{DType, Device, Tensor};

// As in the `rsam` binary (src/main.rs): mimalloc, keeping freed memory, so
// that large outputs reuse pages instead of faulting in fresh zeroed ones.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rsam::kernels::choice::{bf16_products, Bf16Products};

/// mimalloc's `mi_option_purge_delay` = -1, as `rsam` sets it at start-up.
fn keep_freed_memory() {
    // SAFETY: setting an option is allowed at any time.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
}

fn randn(shape: &[usize], std: f32) -> Tensor {
    Tensor::randn(0f32, std, shape, &Device::Cpu).unwrap()
}

/// bf16 benchmarks only where the CPU runs the AVX512-BF16 kernels.
fn native_bf16() -> bool {
    bf16_products() == Bf16Products::Avx512Bf16
}

/// Hiera's global attention (8 heads x 2,500 tokens x 56) and one 8 x 8
/// window batch of stage 1 (1,250 heads x 64 tokens x 56).
fn attention(c: &mut Criterion) {
    keep_freed_memory();
    let mut group = c.benchmark_group("attention");
    group.sample_size(10);
    for (name, (b, h, l, d)) in [
        ("global_8x2500x56", (1, 8, 2500, 56)),
        ("windows_1250x64x56", (625, 2, 64, 56)),
    ] {
        let (q, k, v) = (
            randn(&[b, h, l, d], 1.0),
            randn(&[b, h, l, d], 1.0),
            randn(&[b, h, l, d], 1.0),
        );
        let scale = 1.0 / (d as f32).sqrt();
        group.throughput(Throughput::Elements((4 * b * h * l * l * d) as u64));
        group.bench_function(BenchmarkId::new("f32", name), |bench| {
            bench.iter(|| rsam::kernels::fused_attention(&q, &k, &v, scale, None).unwrap())
        });
        if native_bf16() {
            group.bench_function(BenchmarkId::new("bf16", name), |bench| {
                bench.iter(|| rsam::kernels::bf16::fused_attention(&q, &k, &v, scale, None).unwrap())
            });
        }
    }
    group.finish();
}

/// Linear layers: stage 3's MLP (2,500 x 448 -> 1,792) and stage 1's qkv
/// (40,000 x 112 -> 336) through the gemm paths, BERT's intermediate
/// layer on a sentence (10 x 768 -> 3,072) through the few-rows paths.
fn linears(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    for (name, (m, k, n)) in [
        ("gemm_2500x448x1792", (2500, 448, 1792)),
        ("gemm_40000x112x336", (40000, 112, 336)),
        ("few_rows_10x768x3072", (10, 768, 3072)),
    ] {
        let (x, w, b) = (randn(&[m, k], 1.0), randn(&[n, k], 0.05), randn(&[n], 1.0));
        let w16 = w.to_dtype(DType::BF16).unwrap();
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new("f32", name), |bench| {
            bench.iter(|| {
                if m <= rsam::kernels::FEW_ROWS {
                    rsam::kernels::linear_few_rows(&x, &w)
                        .unwrap()
                        .broadcast_add(&b)
                        .unwrap()
                } else {
                    rsam::kernels::linear_with_bias(&x, &w, &b).unwrap()
                }
            })
        });
        if native_bf16() {
            group.bench_function(BenchmarkId::new("bf16", name), |bench| {
                bench.iter(|| rsam::kernels::bf16::linear(&x, &w16, Some(&b)).unwrap())
            });
        }
    }
    // The FPN's 1x1 convolution of level 0 (112 -> 256 channels on 200 x 200).
    let (x, w, b) = (
        randn(&[1, 112, 200, 200], 1.0),
        randn(&[256, 112, 1, 1], 0.05),
        randn(&[256], 1.0),
    );
    let w16 = w.to_dtype(DType::BF16).unwrap();
    group.throughput(Throughput::Elements(2 * 200 * 200 * 112 * 256));
    group.bench_function(BenchmarkId::new("f32", "conv1x1_112x200x200x256"), |bench| {
        bench.iter(|| {
            x.conv2d(&w, 0, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, 256, 1, 1)).unwrap())
                .unwrap()
        })
    });
    if native_bf16() {
        group.bench_function(BenchmarkId::new("bf16", "conv1x1_112x200x200x256"), |bench| {
            bench.iter(|| rsam::kernels::bf16::pointwise_conv(&x, &w16, &b).unwrap())
        });
    }
    group.finish();
}

/// The erf GELU after stage 3's first MLP layer (2,500 x 1,792).
fn gelu(c: &mut Criterion) {
    let x = randn(&[2500, 1792], 3.0);
    let mut group = c.benchmark_group("gelu");
    group.sample_size(20);
    group.throughput(Throughput::Elements(2500 * 1792));
    group.bench_function("vectorised_2500x1792", |bench| {
        bench.iter(|| rsam::nn::gelu_erf(&x).unwrap())
    });
    group.bench_function("candle_2500x1792", |bench| bench.iter(|| x.gelu_erf().unwrap()));
    group.finish();
}

/// Hiera's query pooling at the first stage transition (200 x 200 x 224).
fn max_pool(c: &mut Criterion) {
    let x = randn(&[1, 200, 200, 224], 1.0);
    let mut group = c.benchmark_group("max_pool");
    group.sample_size(20);
    group.throughput(Throughput::Elements(200 * 200 * 224));
    group.bench_function("nhwc_200x200x224", |bench| {
        bench.iter(|| rsam::kernels::max_pool_nhwc(&x, 2).unwrap())
    });
    group.finish();
}

/// Preprocessing a 1,000 x 750 photo to the 800 px input, and the 200 x 200
/// low-resolution logits upsampled back to it.
fn resize(c: &mut Criterion) {
    let (w, h) = (1000u32, 750u32);
    let image = rsam::preprocess::Rgb8Image {
        width: w,
        height: h,
        data: (0..w * h * 3)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    };
    let logits: Vec<f32> = (0..200 * 200).map(|i| ((i % 97) as f32 - 48.0) * 0.1).collect();
    let mut group = c.benchmark_group("resize");
    group.sample_size(20);
    group.bench_function("model_input_1000x750_to_800", |bench| {
        bench.iter(|| rsam::preprocess::to_model_input(&image, 800))
    });
    group.bench_function("logits_200_to_1000x750", |bench| {
        bench.iter(|| rsam::mask::upsample_bilinear(&logits, 200, 200, h as usize, w as usize))
    });
    group.finish();
}

/// COCO RLE of a 1,000 x 750 mask with a few blobs.
fn rle_encode(c: &mut Criterion) {
    let (w, h) = (1000usize, 750usize);
    let mask: Vec<u8> = (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            u8::from((x - 300).pow(2) + (y - 400).pow(2) < 150 * 150 || (x > 600 && x < 900 && y > 100 && y < 300))
        })
        .collect();
    let mut group = c.benchmark_group("rle");
    group.sample_size(20);
    group.throughput(Throughput::Elements((w * h) as u64));
    group.bench_function("encode_1000x750", |bench| {
        bench.iter(|| rsam::mask::rle::encode(&mask, h, w))
    });
    group.finish();
}

criterion_group!(benches, attention, linears, gelu, max_pool, resize, rle_encode);
criterion_main!(benches);
