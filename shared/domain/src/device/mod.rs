//! Devices in the registry: ids, the entity and its status lifecycle, the JSON of the
//! `/devices` endpoints, and the OData subset of `GET /devices`.
//!
//! Code map:
//! - `id.rs`: [`DeviceId`], IoT Hub's device id rule (128 characters, letters, digits and
//!   `- . % _ * ? ! ( ) , : = @ $ '`).
//! - `model.rs`: [`Device`] and IoT Central's statuses ([`DeviceStatus`]: waiting for approval,
//!   registered, provisioned, blocked; unassigned = no template) with their transitions.
//! - `wire.rs`: [`DeviceBody`], [`DeviceCredentials`], [`AttestationBody`], and how a body
//!   becomes a new or updated [`Device`].
//! - `odata.rs`: [`DeviceQuery`], `$filter`/`$orderby`/`$skiptoken` of the device listing.
//!
//! This module owns no storage (`store::devices`), no HTTP and no randomness (keys are made from
//! bytes the caller drew). That a device's template exists is checked against the store by the
//! caller. Enrollment groups and the derived-key rule live in `enrollment`.

mod id;
mod model;
mod odata;
pub mod properties;
mod wire;

pub use id::{DeviceId, InvalidDeviceId, DEVICE_ID_PUNCTUATION, MAX_DEVICE_ID_LEN};
pub use model::{status, Device, DeviceStatus, ProvisioningRefused, MAX_DEVICE_DISPLAY_NAME};
pub use odata::{
    Condition, DeviceCursor, DeviceQuery, FilterField, FilterValue, InvalidDeviceQuery, OrderBy,
    MAX_CONDITIONS,
};
pub use wire::{AttestationBody, DeviceBody, DeviceCredentials, InvalidAttestation, InvalidDevice};
