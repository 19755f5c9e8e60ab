//! The library's `Cloud` without VMs: a hypervisor and a block storage that
//! keep definitions and volumes in memory. The lab runs the real inventory
//! on them (placement, addresses, DNS records, seeds, Kiwi's section) and
//! plays the instance with a network namespace.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kowabunga::hypervisor::{DomainSpec, DomainState, DomainType, Hypervisor, HypervisorError};
use kowabunga::storage::{BlockStorage, DiskFormat, DiskSource, StorageError, VolumeUsage};

/// A hypervisor that defines and starts domains on paper.
#[derive(Debug, Default)]
pub struct PaperHypervisor {
    domains: Mutex<BTreeMap<String, DomainState>>,
}

impl PaperHypervisor {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, DomainState>) -> T) -> T {
        f(&mut self
            .domains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn set(&self, name: &str, state: DomainState) -> Result<(), HypervisorError> {
        self.with(|d| match d.get_mut(name) {
            Some(s) => {
                *s = state;
                Ok(())
            }
            None => Err(HypervisorError::NotFound(name.to_owned())),
        })
    }
}

impl Hypervisor for PaperHypervisor {
    fn name(&self) -> &str {
        "paper-1"
    }

    fn uri(&self) -> &str {
        "paper:///"
    }

    fn domain_type(&self) -> DomainType {
        DomainType::Test
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.with(|d| {
            if d.contains_key(&spec.name) {
                return Err(HypervisorError::AlreadyExists(spec.name.clone()));
            }
            d.insert(spec.name.clone(), DomainState::Shutoff);
            Ok(())
        })
    }

    fn update(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        self.with(|d| match d.contains_key(&spec.name) {
            true => Ok(()),
            false => Err(HypervisorError::NotFound(spec.name.clone())),
        })
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        self.set(name, DomainState::Running)
    }

    fn shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        self.set(name, DomainState::Shutoff)
    }

    fn stop(&self, name: &str) -> Result<(), HypervisorError> {
        self.set(name, DomainState::Shutoff)
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        self.set(name, DomainState::Running)
    }

    fn delete(&self, name: &str) -> Result<(), HypervisorError> {
        self.with(|d| d.remove(name).map(drop))
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))
    }

    fn state(&self, name: &str) -> Result<DomainState, HypervisorError> {
        self.with(|d| d.get(name).copied())
            .ok_or_else(|| HypervisorError::NotFound(name.to_owned()))
    }

    fn exists(&self, name: &str) -> Result<bool, HypervisorError> {
        Ok(self.with(|d| d.contains_key(name)))
    }

    fn list(&self) -> Result<Vec<String>, HypervisorError> {
        Ok(self.with(|d| d.keys().cloned().collect()))
    }

    fn migrate(&self, name: &str, _destination_uri: &str) -> Result<(), HypervisorError> {
        Err(HypervisorError::Unsupported {
            op: "migrate",
            message: format!("{name}: paper domains do not move"),
        })
    }
}

/// Volumes and templates on paper: names and sizes only.
#[derive(Debug)]
pub struct PaperStorage {
    dir: PathBuf,
    volumes: Mutex<BTreeMap<String, u64>>,
    templates: Mutex<Vec<String>>,
}

impl PaperStorage {
    /// Storage whose volume paths are under `dir` (nothing is written).
    pub fn new(dir: &Path) -> Self {
        PaperStorage {
            dir: dir.to_owned(),
            volumes: Mutex::new(BTreeMap::new()),
            templates: Mutex::new(Vec::new()),
        }
    }

    fn volumes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.volumes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn templates(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.templates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn disk(&self, volume: &str) -> DiskSource {
        DiskSource::File {
            path: self.dir.join(volume),
            format: DiskFormat::Qcow2,
        }
    }

    fn not_found(volume: &str) -> StorageError {
        StorageError::NotFound {
            kind: "volume",
            name: volume.to_owned(),
        }
    }
}

impl BlockStorage for PaperStorage {
    fn backend(&self) -> &'static str {
        "paper"
    }

    fn import_template(&self, template: &str, _image: &Path) -> Result<(), StorageError> {
        self.templates().push(template.to_owned());
        Ok(())
    }

    fn has_template(&self, template: &str) -> Result<bool, StorageError> {
        Ok(self.templates().iter().any(|t| t == template))
    }

    fn remove_template(&self, template: &str) -> Result<(), StorageError> {
        self.templates().retain(|t| t != template);
        Ok(())
    }

    fn clone_template(
        &self,
        template: &str,
        volume: &str,
        size_bytes: u64,
    ) -> Result<DiskSource, StorageError> {
        if !self.has_template(template)? {
            return Err(StorageError::NotFound {
                kind: "template",
                name: template.to_owned(),
            });
        }
        self.create(volume, size_bytes)
    }

    fn create(&self, volume: &str, size_bytes: u64) -> Result<DiskSource, StorageError> {
        let mut v = self.volumes();
        if v.contains_key(volume) {
            return Err(StorageError::AlreadyExists {
                kind: "volume",
                name: volume.to_owned(),
            });
        }
        v.insert(volume.to_owned(), size_bytes);
        Ok(self.disk(volume))
    }

    fn snapshot(&self, volume: &str, _snapshot: &str) -> Result<(), StorageError> {
        self.source(volume).map(drop)
    }

    fn resize(&self, volume: &str, size_bytes: u64) -> Result<(), StorageError> {
        let mut v = self.volumes();
        let size = v.get_mut(volume).ok_or_else(|| Self::not_found(volume))?;
        *size = size_bytes.max(*size);
        Ok(())
    }

    fn remove(&self, volume: &str) -> Result<(), StorageError> {
        self.volumes()
            .remove(volume)
            .map(drop)
            .ok_or_else(|| Self::not_found(volume))
    }

    fn usage(&self, volume: &str) -> Result<VolumeUsage, StorageError> {
        let size = *self
            .volumes()
            .get(volume)
            .ok_or_else(|| Self::not_found(volume))?;
        Ok(VolumeUsage {
            provisioned_bytes: size,
            used_bytes: 0,
        })
    }

    fn exists(&self, volume: &str) -> Result<bool, StorageError> {
        Ok(self.volumes().contains_key(volume))
    }

    fn source(&self, volume: &str) -> Result<DiskSource, StorageError> {
        if self.volumes().contains_key(volume) {
            Ok(self.disk(volume))
        } else {
            Err(Self::not_found(volume))
        }
    }

    fn list(&self) -> Result<Vec<String>, StorageError> {
        Ok(self.volumes().keys().cloned().collect())
    }
}
