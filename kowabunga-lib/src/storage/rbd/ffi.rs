//! Hand-declared bindings to the few librbd functions the RBD backend needs.
//!
//! No maintained librbd crate exists; these signatures follow `<rbd/librbd.h>` of Ceph 16
//! (Debian 12's librbd1) and have been stable since Ceph 12. Only [`super::image`] calls
//! them, through safe wrappers. The `rados_ioctx_t` handles come from the `ceph` crate.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_int, c_void};

/// An I/O context on one pool (librados' `rados_ioctx_t`, owned by `ceph::ceph::IoCtx`).
pub type rados_ioctx_t = *mut c_void;
/// An open RBD image (`rbd_image_t`).
pub type rbd_image_t = *mut c_void;
/// The callback of [`rbd_diff_iterate2`]: `(offset, length, exists, arg) -> 0 to go on`.
pub type rbd_diff_cb = unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int;

/// `RBD_FEATURE_LAYERING`: the image can be a clone parent / child.
pub const RBD_FEATURE_LAYERING: u64 = 1 << 0;
/// `RBD_FEATURE_EXCLUSIVE_LOCK`.
pub const RBD_FEATURE_EXCLUSIVE_LOCK: u64 = 1 << 2;
/// `RBD_FEATURE_OBJECT_MAP`: tracks which objects exist (fast `du`, fast clone reads).
pub const RBD_FEATURE_OBJECT_MAP: u64 = 1 << 3;
/// `RBD_FEATURE_FAST_DIFF`: per-object dirty state in the object map.
pub const RBD_FEATURE_FAST_DIFF: u64 = 1 << 4;
/// `RBD_FEATURE_DEEP_FLATTEN`.
pub const RBD_FEATURE_DEEP_FLATTEN: u64 = 1 << 5;
/// `RBD_FEATURES_DEFAULT` of librbd: what `rbd create` uses.
pub const RBD_FEATURES_DEFAULT: u64 = RBD_FEATURE_LAYERING
    | RBD_FEATURE_EXCLUSIVE_LOCK
    | RBD_FEATURE_OBJECT_MAP
    | RBD_FEATURE_FAST_DIFF
    | RBD_FEATURE_DEEP_FLATTEN;

/// One snapshot, as listed by [`rbd_snap_list`] (`rbd_snap_info_t`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rbd_snap_info_t {
    /// Snapshot id.
    pub id: u64,
    /// Image size at the snapshot, bytes.
    pub size: u64,
    /// NUL-terminated name, owned by librbd until [`rbd_snap_list_end`].
    pub name: *const c_char,
}

#[link(name = "rbd")]
unsafe extern "C" {
    /// Lists image names as consecutive NUL-terminated strings; `-ERANGE` sets `size`
    /// to the buffer size needed.
    pub fn rbd_list(io: rados_ioctx_t, names: *mut c_char, size: *mut usize) -> c_int;
    /// Lists snapshots into `snaps` (room for `*max_snaps`); returns the count or
    /// `-ERANGE` with `*max_snaps` set to the count needed.
    pub fn rbd_snap_list(
        image: rbd_image_t,
        snaps: *mut rbd_snap_info_t,
        max_snaps: *mut c_int,
    ) -> c_int;
    /// Frees the names filled in by [`rbd_snap_list`].
    pub fn rbd_snap_list_end(snaps: *mut rbd_snap_info_t);
    /// Whether a snapshot is protected.
    pub fn rbd_snap_is_protected(
        image: rbd_image_t,
        snap_name: *const c_char,
        is_protected: *mut c_int,
    ) -> c_int;
    /// Creates a format-2 image of `size` bytes with `features`; `order` 0 = default (4 MiB objects).
    pub fn rbd_create2(
        io: rados_ioctx_t,
        name: *const c_char,
        size: u64,
        features: u64,
        order: *mut c_int,
    ) -> c_int;
    /// Clones the protected snapshot `p_name@p_snapname` into `c_name`.
    pub fn rbd_clone(
        p_ioctx: rados_ioctx_t,
        p_name: *const c_char,
        p_snapname: *const c_char,
        c_ioctx: rados_ioctx_t,
        c_name: *const c_char,
        features: u64,
        c_order: *mut c_int,
    ) -> c_int;
    /// Removes an image (it must have no snapshots and no watchers).
    pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
    /// Opens an image (`snap_name` null for the head).
    pub fn rbd_open(
        io: rados_ioctx_t,
        name: *const c_char,
        image: *mut rbd_image_t,
        snap_name: *const c_char,
    ) -> c_int;
    /// Closes an image opened by [`rbd_open`].
    pub fn rbd_close(image: rbd_image_t) -> c_int;
    /// Grows (or shrinks) an image.
    pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
    /// The image's size in bytes.
    pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
    /// How much of the parent is visible through a clone (0 for a non-clone).
    pub fn rbd_get_overlap(image: rbd_image_t, overlap: *mut u64) -> c_int;
    /// Creates a snapshot of the head.
    pub fn rbd_snap_create(image: rbd_image_t, snapname: *const c_char) -> c_int;
    /// Removes a (not protected) snapshot.
    pub fn rbd_snap_remove(image: rbd_image_t, snapname: *const c_char) -> c_int;
    /// Protects a snapshot so that it can be cloned.
    pub fn rbd_snap_protect(image: rbd_image_t, snap_name: *const c_char) -> c_int;
    /// Unprotects a snapshot (fails with `EBUSY` while clones exist).
    pub fn rbd_snap_unprotect(image: rbd_image_t, snap_name: *const c_char) -> c_int;
    /// Whether a snapshot exists.
    pub fn rbd_snap_exists(image: rbd_image_t, snapname: *const c_char, exists: *mut bool)
        -> c_int;
    /// Writes `len` bytes at `ofs`; returns the count written or a negative errno.
    pub fn rbd_write(image: rbd_image_t, ofs: u64, len: usize, buf: *const c_char) -> isize;
    /// Reads `len` bytes at `ofs`; returns the count read or a negative errno.
    pub fn rbd_read(image: rbd_image_t, ofs: u64, len: usize, buf: *mut c_char) -> isize;
    /// Calls `cb` for every allocated extent (whole objects with `whole_object`, which uses
    /// the object map when present: the same as `rbd du`).
    pub fn rbd_diff_iterate2(
        image: rbd_image_t,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: Option<rbd_diff_cb>,
        arg: *mut c_void,
    ) -> c_int;
}

#[link(name = "rados")]
unsafe extern "C" {
    /// Sends a JSON command to the active ceph-mgr (the `ceph` crate declares only the
    /// monitor and OSD variants). Buffers are freed with `rados_buffer_free`.
    pub fn rados_mgr_command(
        cluster: *mut c_void,
        cmd: *mut *const c_char,
        cmdlen: usize,
        inbuf: *const c_char,
        inbuflen: usize,
        outbuf: *mut *mut c_char,
        outbuflen: *mut usize,
        outs: *mut *mut c_char,
        outslen: *mut usize,
    ) -> c_int;
}
