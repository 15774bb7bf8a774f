//! GPUs through NVML (nvml-wrapper loads the driver's library at run time, so the processor
//! builds and runs on machines without one).
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;
use serde::Serialize;

/// One GPU as the slot's task sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// NVML index on this machine.
    pub index: u32,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// Bytes.
    pub memory_total_bytes: u64,
    /// Bytes.
    pub memory_used_bytes: u64,
    /// Percent.
    pub utilization_pct: u32,
    /// Degrees Celsius.
    pub temperature_c: u32,
}

/// The machine's GPUs, or none.
pub struct Gpus {
    nvml: Option<Nvml>,
    found: Vec<DeviceInfo>,
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpus").field("found", &self.found).finish()
    }
}

impl Gpus {
    /// Looks for NVIDIA GPUs; logs one clear line either way.
    pub fn discover(enabled: bool) -> Gpus {
        if !enabled {
            tracing::info!("GPUs disabled (--no-gpu): CPU slots only");
            return Gpus::none();
        }
        let nvml = match Nvml::init() {
            Ok(n) => n,
            Err(e) => {
                tracing::info!(
                    "no NVIDIA driver found (NVML: {e}): CPU slots only, gpu.devices() returns []"
                );
                return Gpus::none();
            }
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("NVML loaded but could not count devices ({e}): CPU slots only");
                return Gpus::none();
            }
        };
        let mut gpus = Gpus {
            nvml: Some(nvml),
            found: Vec::new(),
        };
        gpus.found = (0..count).filter_map(|i| gpus.read(i)).collect();
        let driver = gpus
            .nvml
            .as_ref()
            .and_then(|n| n.sys_driver_version().ok())
            .unwrap_or_else(|| "?".into());
        tracing::info!(
            "NVML driver {driver}: {} GPU(s): {}",
            gpus.found.len(),
            gpus.found
                .iter()
                .map(|d| format!(
                    "#{} {} ({} MiB)",
                    d.index,
                    d.name,
                    d.memory_total_bytes >> 20
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        gpus
    }

    /// No GPUs.
    pub fn none() -> Gpus {
        Gpus {
            nvml: None,
            found: Vec::new(),
        }
    }

    /// The GPUs found at start.
    pub fn found(&self) -> &[DeviceInfo] {
        &self.found
    }

    /// The GPUs found at start as GPU compute matches them to wgpu adapters (PCI bus ids).
    pub fn compute_gpus(&self) -> Vec<crate::compute::NvmlGpu> {
        let Some(nvml) = &self.nvml else {
            return Vec::new();
        };
        self.found
            .iter()
            .map(|d| crate::compute::NvmlGpu {
                index: d.index,
                pci_bus_id: nvml
                    .device_by_index(d.index)
                    .and_then(|dev| dev.pci_info())
                    .map(|p| p.bus_id)
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Fresh readings of the given devices (memory, utilisation, temperature change).
    pub fn devices(&self, indices: &[u32]) -> Vec<DeviceInfo> {
        indices.iter().filter_map(|&i| self.read(i)).collect()
    }

    fn read(&self, index: u32) -> Option<DeviceInfo> {
        let nvml = self.nvml.as_ref()?;
        let d = match nvml.device_by_index(index) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("NVML device {index}: {e}");
                return None;
            }
        };
        let mem = d.memory_info().ok();
        Some(DeviceInfo {
            index,
            name: d.name().unwrap_or_else(|_| "unknown".into()),
            uuid: d.uuid().unwrap_or_default(),
            memory_total_bytes: mem.as_ref().map(|m| m.total).unwrap_or(0),
            memory_used_bytes: mem.as_ref().map(|m| m.used).unwrap_or(0),
            utilization_pct: d.utilization_rates().map(|u| u.gpu).unwrap_or(0),
            temperature_c: d.temperature(TemperatureSensor::Gpu).unwrap_or(0),
        })
    }
}

/// A place where one task runs at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// 0-based, GPU slots first.
    pub index: usize,
    /// The NVML indices of the slot's GPUs (empty for a CPU slot).
    pub gpus: Vec<u32>,
}

impl Slot {
    /// `gpu` or `cpu`: the class in metrics and estimates.
    pub fn class(&self) -> &'static str {
        if self.is_gpu() {
            "gpu"
        } else {
            "cpu"
        }
    }

    /// Whether the slot owns a GPU.
    pub fn is_gpu(&self) -> bool {
        !self.gpus.is_empty()
    }

    /// `CUDA_VISIBLE_DEVICES` for children of this slot: its GPUs, or none at all on a CPU slot
    /// (so a CPU task cannot grab a GPU another slot owns).
    pub fn cuda_visible_devices(&self) -> String {
        self.gpus
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One slot per GPU, then `cpu_slots` CPU slots.
pub fn plan_slots(gpus: &Gpus, cpu_slots: u32) -> Vec<Slot> {
    let mut slots: Vec<Slot> = gpus
        .found()
        .iter()
        .map(|d| Slot {
            index: 0,
            gpus: vec![d.index],
        })
        .collect();
    slots.extend((0..cpu_slots).map(|_| Slot {
        index: 0,
        gpus: vec![],
    }));
    for (i, s) in slots.iter_mut().enumerate() {
        s.index = i;
    }
    slots
}
