//! Estimates π by throwing random points at the unit square.

crpc_guest::export! {
    /// π from `samples` random points; reports progress every 1 %.
    fn estimate_pi(samples: u64) -> crpc_guest::Result<f64> {
        if samples == 0 {
            return Err("samples must be at least 1".into());
        }
        // Seeded per task (from WASI randomness), so repeated runs are independent estimates
        // and averaging them gains precision.
        let mut rng = XorShift(seed() | 1);
        let step = (samples / 100).max(1);
        let mut inside = 0u64;
        for i in 0..samples {
            let (x, y) = (rng.unit(), rng.unit());
            if x * x + y * y <= 1.0 {
                inside += 1;
            }
            if (i + 1) % step == 0 {
                crpc_guest::progress(100.0 * (i + 1) as f64 / samples as f64);
            }
        }
        Ok(4.0 * inside as f64 / samples as f64)
    }

    /// π from at least `samples` points thrown on the slot's GPU by 65,536 invocations.
    fn estimate_pi_gpu(samples: u64) -> crpc_guest::Result<f64> {
        use crpc_guest::compute::{Buffer, Module};
        const GROUPS: u32 = 256;
        const INVOCATIONS: u64 = GROUPS as u64 * 256;
        if samples == 0 || samples > 1 << 40 {
            return Err("samples must be 1 to 2^40".into());
        }
        let per = samples.div_ceil(INVOCATIONS);
        let module = Module::compile(include_str!("pi.wgsl"))?;
        let counts = Buffer::new(4 * INVOCATIONS)?;
        let params: Vec<u8> = [per as u32, seed() as u32]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let params = Buffer::from_bytes(&params)?;
        module.dispatch("sample", &[&counts, &params], [GROUPS, 1, 1])?;
        let inside: u64 = counts.read_u32()?.iter().map(|&c| c as u64).sum();
        Ok(4.0 * inside as f64 / (per * INVOCATIONS) as f64)
    }
}

/// A random seed: `RandomState` draws its keys from the host's `random` interface.
fn seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x9E37_79B9_7F4A_7C15u64)
}

/// A small, fast generator, seeded per task.
struct XorShift(u64);

impl XorShift {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
