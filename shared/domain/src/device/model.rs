//! The device entity and its status lifecycle, as IoT Central defines it.
//!
//! IoT Central's statuses map onto two flags of the REST API (`howto-manage-devices-
//! individually`): Waiting for approval = `provisioned:false, enabled:false` for a device that
//! connected unregistered through a group without auto-approve; Registered =
//! `provisioned:false, enabled:true`; Provisioned = `provisioned:true, enabled:true`; Blocked =
//! `enabled:false` with `provisioned` unchanged (unblocking returns to the prior state). The flags
//! alone cannot tell a blocked registered device from one waiting for approval, so the entity
//! also carries `approved`: false only for a device that has never been enabled since it
//! registered itself. Enabling a device approves it, which is how IoT Central's REST API
//! approves. "Unassigned" is not a status but a device without a template.
//!
//! Every transition is a pure function on [`Device`]; storage and HTTP are elsewhere.

use crate::auth::OrganizationId;
use crate::dtdl::Dtmi;
use crate::enrollment::{EnrollmentGroup, SymmetricKeys};

use super::DeviceId;

/// Longest device `displayName` IoT Central accepts.
pub const MAX_DEVICE_DISPLAY_NAME: usize = 148;

/// A device in the registry. Fields carry no invariant beyond their types, so they are public;
/// the lifecycle rules are the methods below.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: DeviceId,
    /// Opaque; changes on every write.
    pub etag: String,
    pub display_name: String,
    /// `None`: unassigned, no device template yet.
    pub template: Option<Dtmi>,
    pub enabled: bool,
    /// Completed DPS provisioning at least once.
    pub provisioned: bool,
    pub simulated: bool,
    /// False only while a self-registered device waits for an operator's approval.
    pub approved: bool,
    /// IoT Central supports one organization per device.
    pub organization: Option<OrganizationId>,
    /// The individual symmetric-key enrollment; `None` when the device has none and can only
    /// provision through an enrollment group.
    pub keys: Option<SymmetricKeys>,
}

/// IoT Central's device status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    WaitingForApproval,
    Registered,
    Provisioned,
    Blocked,
}

impl DeviceStatus {
    /// The status as IoT Central's UI names it.
    pub fn name(self) -> &'static str {
        match self {
            DeviceStatus::WaitingForApproval => "Waiting for approval",
            DeviceStatus::Registered => "Registered",
            DeviceStatus::Provisioned => "Provisioned",
            DeviceStatus::Blocked => "Blocked",
        }
    }
}

/// Why a device may not provision now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProvisioningRefused {
    #[error("the device is blocked")]
    Blocked,
    #[error("the device is waiting for an operator's approval")]
    WaitingForApproval,
}

/// The status the three flags mean.
pub fn status(enabled: bool, provisioned: bool, approved: bool) -> DeviceStatus {
    match (enabled, provisioned, approved) {
        (false, _, false) => DeviceStatus::WaitingForApproval,
        (false, _, true) => DeviceStatus::Blocked,
        (true, true, _) => DeviceStatus::Provisioned,
        (true, false, _) => DeviceStatus::Registered,
    }
}

impl Device {
    pub fn status(&self) -> DeviceStatus {
        status(self.enabled, self.provisioned, self.approved)
    }

    /// No device template assigned (IoT Central's "Unassigned"; fixed by migrating the device).
    pub fn is_unassigned(&self) -> bool {
        self.template.is_none()
    }

    /// A device that connected through an enrollment group without being registered first:
    /// enabled at once when the group auto-approves, otherwise waiting for approval.
    pub fn self_registered(
        id: DeviceId,
        etag: String,
        template: Option<Dtmi>,
        auto_approve: bool,
    ) -> Device {
        Device {
            display_name: id.as_str().to_owned(),
            id,
            etag,
            template,
            enabled: auto_approve,
            provisioned: false,
            simulated: false,
            approved: auto_approve,
            organization: None,
            keys: None,
        }
    }

    /// Blocks (`false`) or unblocks (`true`) the device. Enabling also approves a device
    /// waiting for approval; `provisioned` is never touched, so unblocking restores the prior
    /// status.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
        if enabled {
            self.approved = true;
        }
    }

    /// The keys the device connects with, as `GET /devices/{id}/credentials` shows them: its
    /// individual keys when it has an individual enrollment, otherwise the keys derived from
    /// `group` (the group it would provision through), otherwise none.
    pub fn connection_keys(&self, group: Option<&EnrollmentGroup>) -> Option<SymmetricKeys> {
        match (&self.keys, group) {
            (Some(keys), _) => Some(keys.clone()),
            (None, Some(group)) => Some(group.keys.derive_for_device(self.id.as_str())),
            (None, None) => None,
        }
    }

    /// Records a successful DPS registration, refused while blocked or waiting for approval.
    pub fn provision(&mut self) -> Result<(), ProvisioningRefused> {
        match self.status() {
            DeviceStatus::Blocked => Err(ProvisioningRefused::Blocked),
            DeviceStatus::WaitingForApproval => Err(ProvisioningRefused::WaitingForApproval),
            DeviceStatus::Registered | DeviceStatus::Provisioned => {
                self.provisioned = true;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_iot_centrals_statuses() {
        use DeviceStatus::*;
        let check = |enabled, provisioned, approved, expected: DeviceStatus| {
            assert_eq!(
                status(enabled, provisioned, approved),
                expected,
                "enabled {enabled} provisioned {provisioned} approved {approved}"
            );
        };
        check(true, false, true, Registered);
        check(true, true, true, Provisioned);
        check(false, false, true, Blocked);
        check(false, true, true, Blocked);
        check(false, false, false, WaitingForApproval);
        // Enabled means approved; the flag cannot disagree after `set_enabled`.
        check(true, false, false, Registered);
        assert_eq!(WaitingForApproval.name(), "Waiting for approval");
    }

    fn device(auto_approve: bool) -> Device {
        Device::self_registered(
            DeviceId::parse("d1").unwrap(),
            "e".into(),
            None,
            auto_approve,
        )
    }

    #[test]
    fn a_device_waiting_for_approval_is_approved_by_enabling_it() {
        let mut device = device(false);
        assert_eq!(device.status(), DeviceStatus::WaitingForApproval);
        assert!(device.is_unassigned());
        assert_eq!(
            device.provision(),
            Err(ProvisioningRefused::WaitingForApproval)
        );
        device.set_enabled(true);
        assert_eq!(device.status(), DeviceStatus::Registered);
        assert_eq!(device.provision(), Ok(()));
        assert_eq!(device.status(), DeviceStatus::Provisioned);
    }

    #[test]
    fn connection_keys_prefer_the_individual_enrollment() {
        use crate::enrollment::{derive_device_key, EnrollmentGroupId};
        let group = EnrollmentGroup {
            id: EnrollmentGroupId::parse("g1").unwrap(),
            etag: "e".into(),
            display_name: "g1".into(),
            enabled: true,
            keys: SymmetricKeys::from_random([1; 64]),
            auto_approve: true,
        };
        let mut device = device(true);
        assert_eq!(device.connection_keys(None), None);
        let derived = device.connection_keys(Some(&group)).unwrap();
        assert_eq!(
            derived.primary,
            derive_device_key(&group.keys.primary, "d1")
        );
        assert_eq!(
            derived.secondary,
            derive_device_key(&group.keys.secondary, "d1")
        );
        device.keys = Some(SymmetricKeys::from_random([2; 64]));
        assert_eq!(device.connection_keys(Some(&group)), device.keys);
    }

    #[test]
    fn blocking_and_unblocking_returns_to_the_prior_status() {
        let mut device = device(true);
        device.provision().unwrap();
        device.set_enabled(false);
        assert_eq!(device.status(), DeviceStatus::Blocked);
        assert_eq!(device.provision(), Err(ProvisioningRefused::Blocked));
        device.set_enabled(true);
        assert_eq!(device.status(), DeviceStatus::Provisioned);

        let mut registered = self::device(true);
        registered.set_enabled(false);
        assert_eq!(registered.status(), DeviceStatus::Blocked);
        registered.set_enabled(true);
        assert_eq!(registered.status(), DeviceStatus::Registered);
    }
}
