//! Reports the GPUs of the slot it runs on, through the processor's NVML host functions.

#[derive(serde::Serialize)]
struct Gpu {
    index: u32,
    name: String,
    uuid: String,
    memory_total_bytes: u64,
    memory_used_bytes: u64,
    utilization_pct: u32,
    temperature_c: u32,
}

crpc_guest::export! {
    /// The slot's GPUs (an empty list on a CPU slot or a machine without an NVIDIA driver).
    fn devices() -> crpc_guest::Result<Vec<Gpu>> {
        Ok(crpc_guest::gpu_devices()
            .into_iter()
            .map(|d| Gpu {
                index: d.index,
                name: d.name,
                uuid: d.uuid,
                memory_total_bytes: d.memory_total_bytes,
                memory_used_bytes: d.memory_used_bytes,
                utilization_pct: d.utilization_pct,
                temperature_c: d.temperature_c,
            })
            .collect())
    }
}
