//! Which CPU kernels run: chosen once per process from the CPU's features
//! and two environment switches, so that every path can be exercised on
//! any machine.
//!
//! - `RSAM_GENERIC_KERNELS=1`: none of the custom CPU kernels; every
//!   operation goes through Candle's generic ops, as on CUDA, and
//!   `--dtype bf16` runs the whole network in bf16 the way CUDA does. The
//!   parity tests run this way too, so that dtype and shape errors of the
//!   generic path show up on the CPU.
//! - `RSAM_AVX512_BF16=0`: the bf16 products run as on a CPU without
//!   AVX512-BF16 (the bf16 operands widened to f32, f32 kernels), to test
//!   that path on a CPU that has the instructions.

use std::sync::OnceLock;

/// How bf16 x bf16 products with f32 accumulation are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Products {
    /// `vdpbf16ps` (AVX512-BF16): two bf16 products added to each f32 lane
    /// per instruction, twice the work of an f32 FMA.
    Avx512Bf16,
    /// The bf16 operands widened to f32 and multiplied by the f32 kernels:
    /// the same rounding of the operands, f32 speed.
    Widened,
}

/// Whether the custom CPU kernels (fused attention, few-rows and biased
/// linears, vectorised GELU, channels-last max pool, the bf16 products)
/// may run. `RSAM_GENERIC_KERNELS=1` turns them off for the process.
pub fn custom_kernels() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| !env_flag("RSAM_GENERIC_KERNELS", false))
}

/// The bf16 product implementation of this CPU (`RSAM_AVX512_BF16=0`
/// forces [`Bf16Products::Widened`]).
pub fn bf16_products() -> Bf16Products {
    static CHOICE: OnceLock<Bf16Products> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        if env_flag("RSAM_AVX512_BF16", true) && cpu_has_avx512_bf16() {
            Bf16Products::Avx512Bf16
        } else {
            Bf16Products::Widened
        }
    })
}

/// AVX512-BF16 plus the AVX-512 subsets its kernels also use.
pub fn cpu_has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A boolean environment switch: `1` / `true` / `on` / `yes` or `0` /
/// `false` / `off` / `no` (any case); unset gives `default`, and so does
/// any other value, with a warning that names it.
fn env_flag(name: &str, default: bool) -> bool {
    let Ok(value) = std::env::var(name) else {
        return default;
    };
    match parse_flag(&value) {
        Some(flag) => flag,
        None => {
            tracing::warn!(
                "{name}={value:?} is not a switch (expected 1 or 0); using {}",
                u8::from(default)
            );
            default
        }
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_parse_both_ways_and_reject_the_rest() {
        for on in ["1", "true", "ON", " yes "] {
            assert_eq!(parse_flag(on), Some(true), "{on:?}");
        }
        for off in ["0", "false", "Off", "no"] {
            assert_eq!(parse_flag(off), Some(false), "{off:?}");
        }
        for other in ["", "2", "enabled", "generic"] {
            assert_eq!(parse_flag(other), None, "{other:?}");
        }
    }
}
