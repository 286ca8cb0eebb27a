//! Where a role's tensors live: `--device cpu|cuda|cuda:N|auto` ([`DeviceSpec`]). A request for CUDA
//! says plainly why it cannot be met: a build without the `cuda` feature, or a machine without that GPU.
//! The dtype they compute in: `--dtype auto|f32|bf16|f16` ([`DTypeSpec`]; `auto` is bf16 on a GPU and
//! f32 on the CPU).

use crate::error::{Error, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A device request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// GPU 0 when this build has CUDA and the machine a GPU, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `N` (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            || Error::Device { spec: s.to_string(), reason: "not a device: use cpu, cuda, cuda:N or auto".into() };
        match s.trim() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => {
                let n = other.strip_prefix("cuda:").ok_or_else(bad)?;
                n.parse().map(DeviceSpec::Cuda).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl DeviceSpec {
    /// Opens the device. CUDA in a build without the `cuda` feature, or a GPU the machine does not have,
    /// is an error that says which.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            // A CUDA build on a machine without a GPU falls back to the CPU (candle's
            // `cuda_if_available` only asks whether the build has CUDA).
            DeviceSpec::Auto if candle_core::utils::cuda_is_available() => Ok(new_cuda(0).unwrap_or(Device::Cpu)),
            DeviceSpec::Auto => Ok(Device::Cpu),
            DeviceSpec::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(Error::Device {
                        spec: self.to_string(),
                        reason: "this build has no CUDA support: rebuild with `--features cuda`".into(),
                    });
                }
                new_cuda(n).map_err(|reason| Error::Device { spec: self.to_string(), reason })
            }
        }
    }
}

/// Opens CUDA device `n`, once per process: candle gives every `Device::new_cuda` a context of its own,
/// and tensors of two contexts count as different devices (a learner and a generator both on `cuda:0`
/// would copy weights through the host). The CUDA libraries are loaded at run time (cudarc's
/// `dynamic-loading`, vendor patch 0006), and cudarc panics when the driver library is missing: that
/// panic becomes an error here.
fn new_cuda(n: usize) -> std::result::Result<Device, String> {
    static OPEN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<usize, Device>>> =
        std::sync::OnceLock::new();
    let mut open = OPEN.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = open.get(&n) {
        return Ok(d.clone());
    }
    // cudarc's panic is turned into an error: keep the default hook from printing it (and a backtrace)
    // as if the process had crashed.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(|| Device::new_cuda(n));
    std::panic::set_hook(hook);
    match opened {
        Ok(Ok(d)) => {
            open.insert(n, d.clone());
            Ok(d)
        }
        Ok(Err(e)) => Err(format!("this machine has no such GPU ({e})")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Err(format!(
                "the CUDA driver library could not be loaded (no NVIDIA driver, or not on LD_LIBRARY_PATH): {msg}"
            ))
        }
    }
}

/// A compute-dtype request: `auto` is bf16 on a GPU (the tensor cores' format; the optimizer keeps f32
/// master weights and moments) and f32 on the CPU (where the fused kernels and the exact-resume tests
/// live).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DTypeSpec {
    /// bf16 on a GPU, f32 on the CPU.
    #[default]
    Auto,
    /// A fixed dtype on every device.
    Fixed(DType),
}

impl FromStr for DTypeSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(DTypeSpec::Auto),
            "f32" => Ok(DTypeSpec::Fixed(DType::F32)),
            "bf16" => Ok(DTypeSpec::Fixed(DType::BF16)),
            "f16" => Ok(DTypeSpec::Fixed(DType::F16)),
            other => Err(Error::Device {
                spec: other.to_string(),
                reason: "not a compute dtype: use auto, f32, bf16 or f16".into(),
            }),
        }
    }
}

impl fmt::Display for DTypeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DTypeSpec::Auto => write!(f, "auto"),
            DTypeSpec::Fixed(d) => write!(f, "{}", d.as_str()),
        }
    }
}

impl TryFrom<String> for DTypeSpec {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DTypeSpec> for String {
    fn from(d: DTypeSpec) -> String {
        d.to_string()
    }
}

impl DTypeSpec {
    /// The dtype on `device`.
    pub fn resolve(self, device: &Device) -> DType {
        match self {
            DTypeSpec::Fixed(d) => d,
            DTypeSpec::Auto if device.is_cpu() => DType::F32,
            DTypeSpec::Auto => DType::BF16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_auto_is_f32_on_the_cpu_and_a_bad_one_is_named() {
        assert_eq!(DTypeSpec::Auto.resolve(&Device::Cpu), DType::F32);
        assert_eq!("bf16".parse::<DTypeSpec>().ok().map(|d| d.resolve(&Device::Cpu)), Some(DType::BF16));
        assert_eq!("auto".parse::<DTypeSpec>().ok(), Some(DTypeSpec::Auto));
        assert_eq!(DTypeSpec::Fixed(DType::BF16).to_string(), "bf16");
        let e = "fp8".parse::<DTypeSpec>().expect_err("rejected").to_string();
        assert!(e.contains("fp8") && e.contains("auto, f32, bf16 or f16"), "{e}");
    }

    #[test]
    fn parses_every_form_and_names_a_bad_one() {
        assert_eq!("cpu".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cpu));
        assert_eq!("cuda".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Cuda(3)));
        assert_eq!("auto".parse::<DeviceSpec>().ok(), Some(DeviceSpec::Auto));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "metal"] {
            let e = bad.parse::<DeviceSpec>().expect_err("rejected").to_string();
            assert!(e.contains(bad) && e.contains("cpu, cuda, cuda:N or auto"), "{e}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_opens_and_cuda_without_the_feature_says_so() {
        assert!(matches!(DeviceSpec::Cpu.open(), Ok(Device::Cpu)));
        if !candle_core::utils::cuda_is_available() {
            let e = DeviceSpec::Cuda(0).open().expect_err("no CUDA here").to_string();
            assert!(e.contains("no CUDA support") && e.contains("--features cuda"), "{e}");
            assert!(matches!(DeviceSpec::Auto.open(), Ok(Device::Cpu)), "auto falls back to the CPU");
        }
    }
}
