// The matrices `matmul(n, seed)` multiplies. One definition, also `include!`d by the matmul
// bench (`bench/src/gpu.rs`) and the GPU tests (`tests/e2e/gpu.rs`), so their checksums are
// of the same matrices.

/// An n×n matrix of integers -3…3 (exact in f32, and so is every sum of C up to n = 8192)
/// from `seed`; `which` tells A (0) from B (1).
pub fn fill(seed: u64, which: u64, n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| {
            (mix(seed ^ (which << 62) ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) % 7) as f32
                - 3.0
        })
        .collect()
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
