//! DPS provisioning: which enrollments a registration id may authenticate through, and what a
//! registration does to the registry. Pure rules; the store runs them in one transaction
//! (`store::provisioning`) and the bridge speaks the MQTT side (`$dps/registrations/...`).
//!
//! The contract with the bridge (internal secret):
//! - `GET /internal/registry/registrations/{registrationId}?idScope=...` answers
//!   [`RegistrationCandidates`]: for each enrollment the id may provision through, the keys its
//!   SAS token may be signed with. An individual enrollment (a device with its own keys) takes
//!   precedence over groups, as in DPS and IoT Central; otherwise every enabled enrollment group
//!   offers the keys derived for the id. A wrong id scope is 404. The bridge verifies the token
//!   and remembers which enrollment it matched.
//! - `POST /internal/registry/registrations/{registrationId}/register` with a [`RegisterRequest`]
//!   applies [`register`] and answers the DPS `registrationState` ([`RegistrationState`]).
//!
//! Rules, as in IoT Central: an unknown registration id through a group becomes a new device
//! (display name = id, template from the announced model id when such a template exists,
//! otherwise unassigned); with auto-approve it is provisioned at once, without it the device
//! waits for an operator's approval (the registration still answers `assigned`, and the hub
//! refuses the device until it is approved, which is what the device then retries). A known
//! device is provisioned (and gets the announced template if it had none); a blocked device is
//! refused.

use serde::{Deserialize, Serialize};

use crate::device::{Device, DeviceId, DeviceStatus};
use crate::dtdl::Dtmi;
use crate::enrollment::{EnrollmentGroup, SymmetricKeys};

/// The enrollment a registration authenticated through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Enrollment {
    /// The device's own keys (IoT Central's individual enrollment).
    Individual,
    /// An enrollment group, by id; the device's key is derived from the group's.
    Group { id: String },
}

/// One enrollment a registration id may use, with the keys its token may be signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Candidate {
    pub enrollment: Enrollment,
    /// Primary then secondary.
    pub keys: Vec<String>,
}

/// What the bridge needs to authenticate a DPS connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationCandidates {
    pub registration_id: String,
    pub candidates: Vec<Candidate>,
}

/// The enrollments `registration_id` may provision through: the individual one when `device`
/// has its own keys, otherwise one per enabled group in `groups`.
pub fn candidates(
    registration_id: &DeviceId,
    device: Option<&Device>,
    groups: &[EnrollmentGroup],
) -> Vec<Candidate> {
    if let Some(keys) = device.and_then(|device| device.keys.as_ref()) {
        return vec![Candidate {
            enrollment: Enrollment::Individual,
            keys: key_strings(keys),
        }];
    }
    groups
        .iter()
        .filter(|group| group.enabled)
        .map(|group| Candidate {
            enrollment: Enrollment::Group {
                id: group.id.as_str().to_owned(),
            },
            keys: key_strings(&group.keys.derive_for_device(registration_id.as_str())),
        })
        .collect()
}

fn key_strings(keys: &SymmetricKeys) -> Vec<String> {
    vec![
        keys.primary.as_str().to_owned(),
        keys.secondary.as_str().to_owned(),
    ]
}

/// The bridge's register call: who registers through which enrollment, announcing which model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterRequest {
    pub id_scope: String,
    pub enrollment: Enrollment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The host name devices connect to after provisioning: the bridge's own.
    pub assigned_hub: String,
}

/// DPS's `registrationState`, as the SDKs read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationState {
    pub registration_id: String,
    pub created_date_time_utc: String,
    pub assigned_hub: String,
    pub device_id: String,
    /// Always `assigned`: refusals are errors, not states.
    pub status: String,
    /// `initialAssignment` for a new device, `reprovisionedToInitialAssignment` for a known one.
    pub substatus: String,
    pub last_updated_date_time_utc: String,
    pub etag: String,
}

/// Why a registration is refused. The bridge answers DPS status 401 with the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationRefused {
    #[error("the device is blocked")]
    Blocked,
    #[error("the enrollment group `{0}` is disabled or no longer exists")]
    GroupUnavailable(String),
    #[error("the device has its own keys (an individual enrollment), which take precedence")]
    IndividualEnrollmentExists,
    #[error("the device has no individual enrollment")]
    NoIndividualEnrollment,
}

/// The outcome of [`register`]: the device to store and whether it is new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    pub device: Device,
    pub created: bool,
    /// Whether `device` differs from what was stored (a new device always does).
    pub changed: bool,
}

/// Applies a registration of `registration_id` through `enrollment` (`group` is that group when
/// it is one, as stored now) to the stored `existing` device. `template` is the announced model
/// id when a template with that id exists. `etag` becomes the device's etag if it changes.
pub fn register(
    registration_id: &DeviceId,
    existing: Option<Device>,
    enrollment: &Enrollment,
    group: Option<&EnrollmentGroup>,
    template: Option<Dtmi>,
    etag: String,
) -> Result<Registered, RegistrationRefused> {
    let usable_group = || match (enrollment, group) {
        (Enrollment::Group { id }, Some(group)) if group.enabled && group.id.as_str() == id => {
            Ok(group)
        }
        (Enrollment::Group { id }, _) => Err(RegistrationRefused::GroupUnavailable(id.clone())),
        (Enrollment::Individual, _) => Err(RegistrationRefused::NoIndividualEnrollment),
    };
    let Some(mut device) = existing else {
        let group = usable_group()?;
        let mut device =
            Device::self_registered(registration_id.clone(), etag, template, group.auto_approve);
        // A new device through an auto-approving group is enabled, so this cannot refuse.
        let _ = device.provision();
        return Ok(Registered {
            device,
            created: true,
            changed: true,
        });
    };
    match (enrollment, &device.keys) {
        (Enrollment::Individual, None) => return Err(RegistrationRefused::NoIndividualEnrollment),
        (Enrollment::Group { .. }, Some(_)) => {
            return Err(RegistrationRefused::IndividualEnrollmentExists)
        }
        (Enrollment::Group { .. }, None) => {
            usable_group()?;
        }
        (Enrollment::Individual, Some(_)) => {}
    }
    let before = device.clone();
    if device.template.is_none() {
        device.template = template;
    }
    match device.status() {
        DeviceStatus::Blocked => return Err(RegistrationRefused::Blocked),
        // Stays waiting: the registration answers `assigned`, the hub refuses until approval.
        DeviceStatus::WaitingForApproval => {}
        DeviceStatus::Registered | DeviceStatus::Provisioned => {
            device.provisioned = true;
        }
    }
    let changed = device != before;
    if changed {
        device.etag = etag;
    }
    Ok(Registered {
        device,
        created: false,
        changed,
    })
}

/// The device-registration body a device publishes (`$dps/registrations/PUT/iotdps-register`):
/// Python sends `{"payload": null, "registrationId": ...}`, Node omits `payload`; IoT Central
/// reads the model id from `payload.modelId`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistration {
    #[serde(default)]
    pub registration_id: Option<String>,
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

impl DeviceRegistration {
    /// Parses a register body; an empty or blank body (no payload) is an empty registration.
    pub fn parse(body: &[u8]) -> Result<DeviceRegistration, serde_json::Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(DeviceRegistration::default());
        }
        serde_json::from_slice(body)
    }

    /// `payload.modelId`, when it is a string.
    pub fn model_id(&self) -> Option<&str> {
        self.payload.as_ref()?.get("modelId")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::{EnrollmentGroupId, SymmetricKeys};

    fn id(raw: &str) -> DeviceId {
        DeviceId::parse(raw).unwrap()
    }

    fn group(name: &str, enabled: bool, auto_approve: bool) -> EnrollmentGroup {
        EnrollmentGroup {
            id: EnrollmentGroupId::parse(name).unwrap(),
            etag: "g".into(),
            display_name: name.into(),
            enabled,
            auto_approve,
            keys: SymmetricKeys::from_random([7; 64]),
        }
    }

    fn thermostat() -> Dtmi {
        Dtmi::parse("dtmi:com:example:Thermostat;1").unwrap()
    }

    fn via(group: &EnrollmentGroup) -> Enrollment {
        Enrollment::Group {
            id: group.id.as_str().to_owned(),
        }
    }

    #[test]
    fn an_individual_enrollment_takes_precedence_over_groups() {
        let mut device = Device::self_registered(id("d1"), "e".into(), None, true);
        let groups = [group("a", true, true), group("b", false, true)];
        let from_groups = candidates(&id("d1"), Some(&device), &groups);
        assert_eq!(from_groups.len(), 1, "only enabled groups: {from_groups:?}");
        assert_eq!(
            from_groups[0].keys[0],
            groups[0].keys.derive_for_device("d1").primary.as_str()
        );
        device.keys = Some(SymmetricKeys::from_random([1; 64]));
        let individual = candidates(&id("d1"), Some(&device), &groups);
        assert_eq!(individual.len(), 1);
        assert_eq!(individual[0].enrollment, Enrollment::Individual);
    }

    #[test]
    fn an_unknown_device_registers_through_its_group_and_waits_without_auto_approve() {
        let open = group("open", true, true);
        let registered = register(
            &id("d1"),
            None,
            &via(&open),
            Some(&open),
            Some(thermostat()),
            "e1".into(),
        )
        .unwrap();
        assert!(registered.created);
        assert_eq!(registered.device.status(), DeviceStatus::Provisioned);
        assert_eq!(registered.device.template, Some(thermostat()));

        let gated = group("gated", true, false);
        let waiting = register(
            &id("d2"),
            None,
            &via(&gated),
            Some(&gated),
            None,
            "e2".into(),
        )
        .unwrap();
        assert_eq!(waiting.device.status(), DeviceStatus::WaitingForApproval);
        assert!(waiting.device.is_unassigned());

        // Approved later, the next registration provisions it.
        let mut approved = waiting.device.clone();
        approved.set_enabled(true);
        let again = register(
            &id("d2"),
            Some(approved),
            &via(&gated),
            Some(&gated),
            None,
            "e3".into(),
        )
        .unwrap();
        assert_eq!(again.device.status(), DeviceStatus::Provisioned);
        assert!(again.changed && !again.created);
        assert_eq!(again.device.etag, "e3");
    }

    #[test]
    fn a_known_device_keeps_its_template_and_a_repeat_changes_nothing() {
        let open = group("open", true, true);
        let mut device = Device::self_registered(id("d1"), "e0".into(), None, true);
        device.provision().unwrap();
        let other = Dtmi::parse("dtmi:com:example:Other;1").unwrap();
        device.template = Some(other.clone());
        let registered = register(
            &id("d1"),
            Some(device.clone()),
            &via(&open),
            Some(&open),
            Some(thermostat()),
            "e1".into(),
        )
        .unwrap();
        assert_eq!(registered.device.template, Some(other));
        assert!(!registered.changed);
        assert_eq!(registered.device.etag, "e0");
    }

    #[test]
    fn refusals() {
        let open = group("open", true, true);
        let mut blocked = Device::self_registered(id("d1"), "e".into(), None, true);
        blocked.set_enabled(false);
        assert_eq!(
            register(
                &id("d1"),
                Some(blocked),
                &via(&open),
                Some(&open),
                None,
                "x".into()
            ),
            Err(RegistrationRefused::Blocked)
        );
        let disabled = group("off", false, true);
        assert_eq!(
            register(
                &id("d2"),
                None,
                &via(&disabled),
                Some(&disabled),
                None,
                "x".into()
            ),
            Err(RegistrationRefused::GroupUnavailable("off".into()))
        );
        assert_eq!(
            register(
                &id("d3"),
                None,
                &Enrollment::Individual,
                None,
                None,
                "x".into()
            ),
            Err(RegistrationRefused::NoIndividualEnrollment)
        );
        let mut individual = Device::self_registered(id("d4"), "e".into(), None, true);
        individual.keys = Some(SymmetricKeys::from_random([2; 64]));
        assert_eq!(
            register(
                &id("d4"),
                Some(individual),
                &via(&open),
                Some(&open),
                None,
                "x".into()
            ),
            Err(RegistrationRefused::IndividualEnrollmentExists)
        );
    }

    #[test]
    fn register_bodies_from_both_sdks() {
        let python = DeviceRegistration::parse(
            br#"{"payload": {"modelId": "dtmi:com:example:Thermostat;1"}, "registrationId": "d1"}"#,
        )
        .unwrap();
        assert_eq!(python.model_id(), Some("dtmi:com:example:Thermostat;1"));
        let python_none =
            DeviceRegistration::parse(br#"{"payload": null, "registrationId": "d1"}"#).unwrap();
        assert_eq!(python_none.model_id(), None);
        let node = DeviceRegistration::parse(br#"{"registrationId":"d1"}"#).unwrap();
        assert_eq!(node.registration_id.as_deref(), Some("d1"));
        assert_eq!(
            DeviceRegistration::parse(b" ").unwrap(),
            DeviceRegistration::default()
        );
        assert!(DeviceRegistration::parse(b"{").is_err());
    }
}
