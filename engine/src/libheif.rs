//! What the HEIF/AVIF decoder (`heif` feature) and the AVIF encoder (`avif` feature) share of
//! the system libheif: guards that release what libheif allocated, exactly once, and its error
//! messages.

use std::ffi::CStr;

use libheif_sys as lh;

use crate::Error;

/// A libheif context (`heif_context_alloc`), freed on drop. Handles keep their own references.
pub(crate) struct Context(pub(crate) *mut lh::heif_context);

impl Context {
    pub(crate) fn alloc() -> Result<Self, Error> {
        // SAFETY: plain allocation; null checked.
        let ptr = unsafe { lh::heif_context_alloc() };
        if ptr.is_null() {
            return Err(Error::Internal("heif_context_alloc failed".into()));
        }
        Ok(Context(ptr))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: allocated by heif_context_alloc, freed once.
        unsafe { lh::heif_context_free(self.0) }
    }
}

/// An image handle libheif gave us, released on drop.
pub(crate) struct Handle(pub(crate) *mut lh::heif_image_handle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a handle libheif gave us, released once.
        unsafe { lh::heif_image_handle_release(self.0) }
    }
}

/// A decoded or to-be-encoded image, released on drop.
pub(crate) struct Image(pub(crate) *mut lh::heif_image);

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: an image libheif gave us (or heif_image_create made), released once.
        unsafe { lh::heif_image_release(self.0) }
    }
}

/// Whether a libheif call succeeded.
pub(crate) fn is_ok(err: &lh::heif_error) -> bool {
    err.code == lh::heif_error_code_heif_error_Ok
}

/// libheif's message with its code and subcode: `libheif: <message> (<code>/<subcode>)`.
pub(crate) fn describe(err: &lh::heif_error) -> String {
    let message = if err.message.is_null() {
        String::new()
    } else {
        // SAFETY: libheif's messages are NUL-terminated strings that outlive the call.
        unsafe { CStr::from_ptr(err.message) }
            .to_string_lossy()
            .into_owned()
    };
    format!("libheif: {message} ({}/{})", err.code, err.subcode)
}
