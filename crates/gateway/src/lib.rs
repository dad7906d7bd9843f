pub mod sas;
pub mod topics;
