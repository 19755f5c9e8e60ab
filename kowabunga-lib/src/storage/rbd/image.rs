//! Safe wrappers over the librbd bindings of [`super::ffi`].
//!
//! They take the `IoCtx` of the `ceph` crate by reference, so they can only run where that
//! context lives: on the owner thread of [`super::session`].

use std::ffi::{c_int, c_void, CString};
use std::ptr;

use ceph::ceph::IoCtx;

use super::{errno_error, ffi, CephError};

fn cstring(s: &str) -> Result<CString, CephError> {
    CString::new(s).map_err(|_| CephError::InvalidName(s.to_owned()))
}

fn check(op: &'static str, name: &str, ret: c_int) -> Result<(), CephError> {
    if ret < 0 {
        Err(errno_error(op, name, ret))
    } else {
        Ok(())
    }
}

fn raw(io: &IoCtx) -> ffi::rados_ioctx_t {
    *io.inner()
}

/// Creates a format-2 image of `size` bytes with `features` (4 MiB objects).
pub(crate) fn create(io: &IoCtx, name: &str, size: u64, features: u64) -> Result<(), CephError> {
    let c = cstring(name)?;
    let mut order: c_int = 0;
    // SAFETY: valid ioctx (borrowed for the call), NUL-terminated name, out-pointer to a local.
    check("create", name, unsafe {
        ffi::rbd_create2(raw(io), c.as_ptr(), size, features, &mut order)
    })
}

/// Clones `parent@snap` (a protected snapshot) into `child` in the same pool.
pub(crate) fn clone(
    io: &IoCtx,
    parent: &str,
    snap: &str,
    child: &str,
    features: u64,
) -> Result<(), CephError> {
    let (p, s, c) = (cstring(parent)?, cstring(snap)?, cstring(child)?);
    let mut order: c_int = 0;
    // SAFETY: as in `create`; parent and child contexts are the same valid ioctx.
    check("clone", child, unsafe {
        ffi::rbd_clone(
            raw(io),
            p.as_ptr(),
            s.as_ptr(),
            raw(io),
            c.as_ptr(),
            features,
            &mut order,
        )
    })
}

/// Removes an image.
pub(crate) fn remove(io: &IoCtx, name: &str) -> Result<(), CephError> {
    let c = cstring(name)?;
    // SAFETY: valid ioctx and name.
    check("remove", name, unsafe {
        ffi::rbd_remove(raw(io), c.as_ptr())
    })
}

/// Names of all images of the pool.
pub(crate) fn list(io: &IoCtx) -> Result<Vec<String>, CephError> {
    let mut size: usize = 1024;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: valid ioctx; `buf` is writable for `size` bytes, which librbd is told.
        let ret = unsafe { ffi::rbd_list(raw(io), buf.as_mut_ptr().cast(), &mut size) };
        if ret == -libc::ERANGE && size > buf.len() {
            continue; // ERANGE: `size` now holds what is needed
        }
        check("list", "", ret)?;
        buf.truncate((ret as usize).min(buf.len()));
        return Ok(buf
            .split(|b| *b == 0)
            .filter(|n| !n.is_empty())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect());
    }
}

/// An open image, closed on drop. Borrows the `IoCtx` it was opened with, so it cannot
/// outlive it.
pub(crate) struct Image<'io> {
    handle: ffi::rbd_image_t,
    name: String,
    _io: std::marker::PhantomData<&'io IoCtx>,
}

impl<'io> Image<'io> {
    /// Opens the head of `name`.
    pub(crate) fn open(io: &'io IoCtx, name: &str) -> Result<Self, CephError> {
        let c = cstring(name)?;
        let mut handle: ffi::rbd_image_t = ptr::null_mut();
        // SAFETY: valid ioctx and name; a null snapshot name opens the head.
        check("open", name, unsafe {
            ffi::rbd_open(raw(io), c.as_ptr(), &mut handle, ptr::null())
        })?;
        Ok(Image {
            handle,
            name: name.to_owned(),
            _io: std::marker::PhantomData,
        })
    }

    /// Size in bytes.
    pub(crate) fn size(&self) -> Result<u64, CephError> {
        let mut size = 0u64;
        // SAFETY: open image handle, out-pointer to a local.
        check("get_size", &self.name, unsafe {
            ffi::rbd_get_size(self.handle, &mut size)
        })?;
        Ok(size)
    }

    /// Bytes of the parent visible through this clone (0 when it is not a clone).
    pub(crate) fn overlap(&self) -> Result<u64, CephError> {
        let mut overlap = 0u64;
        // SAFETY: open image handle, out-pointer to a local. ENOENT means "no parent".
        let ret = unsafe { ffi::rbd_get_overlap(self.handle, &mut overlap) };
        if ret == -libc::ENOENT {
            return Ok(0);
        }
        check("get_overlap", &self.name, ret)?;
        Ok(overlap)
    }

    /// Grows (or shrinks) the image.
    pub(crate) fn resize(&self, size: u64) -> Result<(), CephError> {
        // SAFETY: open image handle.
        check("resize", &self.name, unsafe {
            ffi::rbd_resize(self.handle, size)
        })
    }

    /// Whether snapshot `snap` exists.
    pub(crate) fn snap_exists(&self, snap: &str) -> Result<bool, CephError> {
        let s = cstring(snap)?;
        let mut exists = false;
        // SAFETY: open image handle, valid name, out-pointer to a local.
        check("snap_exists", &self.name, unsafe {
            ffi::rbd_snap_exists(self.handle, s.as_ptr(), &mut exists)
        })?;
        Ok(exists)
    }

    /// Creates snapshot `snap`.
    pub(crate) fn snap_create(&self, snap: &str) -> Result<(), CephError> {
        let s = cstring(snap)?;
        // SAFETY: open image handle and valid name.
        check("snap_create", &self.name, unsafe {
            ffi::rbd_snap_create(self.handle, s.as_ptr())
        })
    }

    /// Protects snapshot `snap` (required before cloning it).
    pub(crate) fn snap_protect(&self, snap: &str) -> Result<(), CephError> {
        let s = cstring(snap)?;
        // SAFETY: open image handle and valid name.
        check("snap_protect", &self.name, unsafe {
            ffi::rbd_snap_protect(self.handle, s.as_ptr())
        })
    }

    /// Unprotects snapshot `snap` (`EBUSY` while clones of it exist).
    pub(crate) fn snap_unprotect(&self, snap: &str) -> Result<(), CephError> {
        let s = cstring(snap)?;
        // SAFETY: open image handle and valid name.
        check("snap_unprotect", &self.name, unsafe {
            ffi::rbd_snap_unprotect(self.handle, s.as_ptr())
        })
    }

    /// Removes snapshot `snap`.
    pub(crate) fn snap_remove(&self, snap: &str) -> Result<(), CephError> {
        let s = cstring(snap)?;
        // SAFETY: open image handle and valid name.
        check("snap_remove", &self.name, unsafe {
            ffi::rbd_snap_remove(self.handle, s.as_ptr())
        })
    }

    /// Names of the image's snapshots.
    pub(crate) fn snap_names(&self) -> Result<Vec<String>, CephError> {
        let mut max: c_int = 16;
        loop {
            let mut snaps = vec![
                ffi::rbd_snap_info_t {
                    id: 0,
                    size: 0,
                    name: ptr::null()
                };
                usize::try_from(max).unwrap_or(16) + 1
            ];
            // SAFETY: open image handle; `snaps` has room for `max` entries (plus the end
            // marker librbd writes).
            let ret = unsafe { ffi::rbd_snap_list(self.handle, snaps.as_mut_ptr(), &mut max) };
            if ret == -libc::ERANGE {
                continue; // ERANGE: `max` now holds the count needed
            }
            check("snap_list", &self.name, ret)?;
            let names = snaps[..ret as usize]
                .iter()
                .filter(|s| !s.name.is_null())
                // SAFETY: librbd filled `name` with a NUL-terminated string, valid until
                // rbd_snap_list_end below.
                .map(|s| {
                    unsafe { std::ffi::CStr::from_ptr(s.name) }
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            // SAFETY: frees the names filled by the successful rbd_snap_list above, once.
            unsafe { ffi::rbd_snap_list_end(snaps.as_mut_ptr()) };
            return Ok(names);
        }
    }

    /// Whether snapshot `snap` is protected.
    pub(crate) fn snap_is_protected(&self, snap: &str) -> Result<bool, CephError> {
        let s = cstring(snap)?;
        let mut protected: c_int = 0;
        // SAFETY: open image handle, valid name, out-pointer to a local.
        check("snap_is_protected", &self.name, unsafe {
            ffi::rbd_snap_is_protected(self.handle, s.as_ptr(), &mut protected)
        })?;
        Ok(protected != 0)
    }

    /// Writes all of `data` at `offset`.
    pub(crate) fn write_all(&self, mut offset: u64, mut data: &[u8]) -> Result<(), CephError> {
        while !data.is_empty() {
            // SAFETY: open image handle; `data` is valid for `data.len()` bytes.
            let n =
                unsafe { ffi::rbd_write(self.handle, offset, data.len(), data.as_ptr().cast()) };
            if n <= 0 {
                return Err(errno_error(
                    "write",
                    &self.name,
                    if n == 0 { -libc::EIO } else { n as c_int },
                ));
            }
            offset += n as u64;
            data = &data[n as usize..];
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` (short at the end of the image).
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, CephError> {
        // SAFETY: open image handle; `buf` is valid and writable for `buf.len()` bytes.
        let n = unsafe { ffi::rbd_read(self.handle, offset, buf.len(), buf.as_mut_ptr().cast()) };
        if n < 0 {
            return Err(errno_error("read", &self.name, n as c_int));
        }
        Ok(n as usize)
    }

    /// Bytes allocated by this image itself (not its parent), counted in whole objects
    /// from the object map: what `rbd du` prints as USED for an image without snapshots.
    pub(crate) fn used_bytes(&self) -> Result<u64, CephError> {
        unsafe extern "C" fn add(_ofs: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            if exists != 0 {
                // SAFETY: `arg` is the `&mut u64` passed below, alive for the whole iteration.
                unsafe { *arg.cast::<u64>() += len as u64 };
            }
            0
        }
        let size = self.size()?;
        let mut used = 0u64;
        // SAFETY: open image handle; the callback only touches `used`, which outlives the call.
        check("diff_iterate2", &self.name, unsafe {
            ffi::rbd_diff_iterate2(
                self.handle,
                ptr::null(),
                0,
                size,
                0,
                1,
                Some(add),
                (&mut used as *mut u64).cast(),
            )
        })?;
        Ok(used)
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from rbd_open and is closed exactly once.
        let ret = unsafe { ffi::rbd_close(self.handle) };
        if ret < 0 {
            tracing::warn!(image = %self.name, ret, "rbd_close failed");
        }
    }
}
