//! The service catalog (filled in by the catalog work).
