//! DPS provisioning against the store: the enrollments a registration id may use, and a
//! registration applied to the `devices` table (rules in [`crate::provisioning`]).
//!
//! [`register`] reads and writes several rows; call it inside one transaction together with
//! the audit row of the change.

use super::{devices, enrollment_groups, settings, Sql, StoreError};
use crate::device::{Device, DeviceId};
use crate::dtdl::Dtmi;
use crate::enrollment::EnrollmentGroupId;
use crate::provisioning::{
    self, Candidate, Enrollment, RegisterRequest, Registered, RegistrationCandidates,
    RegistrationRefused, RegistrationState,
};
use crate::time::Timestamp;

/// Why a registration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("`{0}` is not this application's ID scope")]
    WrongIdScope(String),
    #[error(transparent)]
    Refused(#[from] RegistrationRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The enrollments `registration_id` may authenticate through; `None` when `id_scope` is not
/// the application's. `random` seeds the ID scope if the application has none yet.
pub fn candidates<S: Sql>(
    sql: &mut S,
    id_scope: &str,
    registration_id: &DeviceId,
    random: [u8; 4],
) -> Result<Option<RegistrationCandidates>, StoreError> {
    if !scope_matches(sql, id_scope, random)? {
        return Ok(None);
    }
    let device = devices::get(sql, registration_id)?;
    Ok(Some(RegistrationCandidates {
        registration_id: registration_id.as_str().to_owned(),
        candidates: enrollments(sql, registration_id, device.as_ref())?,
    }))
}

/// The enrollments `registration_id` (stored as `device`, if it is) may use: the hub accepts
/// tokens signed with any of their keys too.
pub fn enrollments<S: Sql>(
    sql: &mut S,
    registration_id: &DeviceId,
    device: Option<&Device>,
) -> Result<Vec<Candidate>, StoreError> {
    let groups = match device.and_then(|device| device.keys.as_ref()) {
        Some(_) => Vec::new(),
        None => enrollment_groups::enabled(sql)?,
    };
    Ok(provisioning::candidates(registration_id, device, &groups))
}

/// Registers `registration_id` as `request` says, writing the device when it changed. Returns
/// the registration state and what was written (`None`: nothing changed).
pub fn register<S: Sql>(
    sql: &mut S,
    registration_id: &DeviceId,
    request: &RegisterRequest,
    etag: String,
    now: Timestamp,
    random: [u8; 4],
) -> Result<(RegistrationState, Option<Registered>), RegisterError> {
    if !scope_matches(sql, &request.id_scope, random)? {
        return Err(RegisterError::WrongIdScope(request.id_scope.clone()));
    }
    let existing = devices::get(sql, registration_id)?;
    // DPS says `initialAssignment` the first time a device is assigned, even one an operator
    // registered beforehand.
    let first_assignment = existing.as_ref().is_none_or(|device| !device.provisioned);
    let group = match &request.enrollment {
        Enrollment::Group { id } => match EnrollmentGroupId::parse(id) {
            Ok(id) => enrollment_groups::get(sql, &id)?,
            Err(_) => None,
        },
        Enrollment::Individual => None,
    };
    let template = match request.model_id.as_deref().map(Dtmi::parse) {
        Some(Ok(model)) if devices::template_exists(sql, &model)? => Some(model),
        _ => None,
    };
    let registered = provisioning::register(
        registration_id,
        existing,
        &request.enrollment,
        group.as_ref(),
        template,
        etag,
    )?;
    if registered.created {
        devices::insert(sql, &registered.device, now)?;
    } else if registered.changed {
        devices::update(sql, &registered.device, now)?;
    }
    let at = now.to_rfc3339();
    let state = RegistrationState {
        registration_id: registration_id.as_str().to_owned(),
        created_date_time_utc: at.clone(),
        assigned_hub: request.assigned_hub.clone(),
        device_id: registration_id.as_str().to_owned(),
        status: "assigned".to_owned(),
        substatus: if first_assignment {
            "initialAssignment"
        } else {
            "reprovisionedToInitialAssignment"
        }
        .to_owned(),
        last_updated_date_time_utc: at,
        etag: registered.device.etag.clone(),
    };
    Ok((state, registered.changed.then_some(registered)))
}

fn scope_matches<S: Sql>(sql: &mut S, id_scope: &str, random: [u8; 4]) -> Result<bool, StoreError> {
    Ok(settings::id_scope(sql, random)?
        .as_str()
        .eq_ignore_ascii_case(id_scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceStatus;
    use crate::enrollment::{EnrollmentGroup, SymmetricKeys};
    use crate::store::{migrate, RusqliteSql};

    fn migrated() -> RusqliteSql {
        let mut sql = RusqliteSql::open_in_memory().unwrap();
        migrate(&mut sql, Timestamp::from_unix_millis(0)).unwrap();
        sql
    }

    fn add_group(sql: &mut RusqliteSql, id: &str, auto_approve: bool) -> EnrollmentGroup {
        let group = EnrollmentGroup {
            id: EnrollmentGroupId::parse(id).unwrap(),
            etag: "g".into(),
            display_name: id.into(),
            enabled: true,
            keys: SymmetricKeys::from_random([3; 64]),
            auto_approve,
        };
        enrollment_groups::insert(sql, &group, Timestamp::from_unix_millis(0)).unwrap();
        group
    }

    #[test]
    fn a_device_registers_through_a_group_once_and_again() {
        let mut sql = migrated();
        let scope = settings::id_scope(&mut sql, [1, 2, 3, 4]).unwrap();
        add_group(&mut sql, "sas-devices", true);
        let reg = DeviceId::parse("sensor-1").unwrap();

        assert_eq!(
            candidates(&mut sql, "0ne00000000", &reg, [0; 4]).unwrap(),
            None
        );
        let found = candidates(&mut sql, scope.as_str(), &reg, [0; 4])
            .unwrap()
            .unwrap();
        assert_eq!(found.candidates.len(), 1);

        let request = RegisterRequest {
            id_scope: scope.as_str().to_owned(),
            enrollment: found.candidates[0].enrollment.clone(),
            model_id: Some("dtmi:com:example:Missing;1".into()),
            assigned_hub: "localhost".into(),
        };
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let (state, written) =
            register(&mut sql, &reg, &request, "e1".into(), now, [0; 4]).unwrap();
        assert_eq!(state.device_id, "sensor-1");
        assert_eq!(state.substatus, "initialAssignment");
        assert!(written.is_some());
        let device = devices::get(&mut sql, &reg).unwrap().unwrap();
        assert_eq!(device.status(), DeviceStatus::Provisioned);
        assert!(device.is_unassigned(), "no such template: unassigned");

        let (again, written) =
            register(&mut sql, &reg, &request, "e2".into(), now, [0; 4]).unwrap();
        assert_eq!(again.substatus, "reprovisionedToInitialAssignment");
        assert!(written.is_none(), "nothing changed");
        assert_eq!(again.etag, "e1");

        let wrong = RegisterRequest {
            id_scope: "0ne00000000".into(),
            ..request
        };
        assert!(matches!(
            register(&mut sql, &reg, &wrong, "e3".into(), now, [0; 4]),
            Err(RegisterError::WrongIdScope(_))
        ));
    }
}
