//! The rules ids follow: the spec's patterns where it gives them, IoT Hub's device-id rules, and
//! DTDL's DTMI syntax for device templates.

use crate::Invalid;

fn check(
    field: &str,
    id: &str,
    max_len: usize,
    allowed: impl Fn(char) -> bool,
    describe: &str,
) -> Result<(), Invalid> {
    if id.is_empty() {
        return Err(Invalid::field(field, "must not be empty"));
    }
    // RFC 3986 clients remove these path segments before sending (`/devices/..` is `/`), so an
    // entity with such an id could not be read, changed or deleted.
    if id == "." || id == ".." {
        return Err(Invalid::field(
            field,
            format_args!("must not be '{id}', which URLs cannot address"),
        ));
    }
    if id.chars().count() > max_len {
        return Err(Invalid::field(
            field,
            format_args!("must be at most {max_len} characters long"),
        ));
    }
    if let Some(bad) = id.chars().find(|c| !allowed(*c)) {
        return Err(Invalid::field(
            field,
            format_args!("contains {bad:?}, but may contain only {describe}"),
        ));
    }
    Ok(())
}

/// Jobs, scheduled jobs and device groups: `^[a-zA-Z0-9_-]*$`, at most 255 characters.
pub fn check_entity_id(field: &str, id: &str) -> Result<(), Invalid> {
    check(
        field,
        id,
        255,
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-',
        "letters, digits, '_' and '-'",
    )
}

/// Enrollment groups: `^[a-zA-Z0-9-]*$`, at most 255 characters.
pub fn check_enrollment_group_id(id: &str) -> Result<(), Invalid> {
    check(
        "enrollmentGroupId",
        id,
        255,
        |c| c.is_ascii_alphanumeric() || c == '-',
        "letters, digits and '-'",
    )
}

/// API tokens: the spec leaves the id unconstrained; we take the entity-id alphabet plus '.',
/// which covers the ids IoT Central's UI generates and keeps ids safe in URLs and logs.
pub fn check_token_id(id: &str) -> Result<(), Invalid> {
    check(
        "tokenId",
        id,
        255,
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'),
        "letters, digits, '_', '-' and '.'",
    )
}

/// Devices follow IoT Hub's device-id rules (the device connects with this id): at most 128
/// ASCII letters, digits and `- . % _ * ? ! ( ) , : = @ $ '`.
pub fn check_device_id(id: &str) -> Result<(), Invalid> {
    const SPECIAL: &str = "-.%_*?!(),:=@$'";
    check(
        "deviceId",
        id,
        128,
        |c| c.is_ascii_alphanumeric() || SPECIAL.contains(c),
        "letters, digits and - . % _ * ? ! ( ) , : = @ $ '",
    )
}

/// A DTMI (`dtmi:segment:segment;version`). IoT Central's generated template ids carry no
/// version (`dtmi:modelDefinition:zomtmdxh:eqod32zbyl`), so the version is optional here.
pub fn check_dtmi(field: &str, id: &str) -> Result<(), Invalid> {
    let refuse = |why: &str| {
        Err(Invalid::field(
            field,
            format_args!("must be a DTMI ({why})"),
        ))
    };
    if id.len() > 2048 {
        return refuse("at most 2048 characters");
    }
    let Some(rest) = id.strip_prefix("dtmi:") else {
        return refuse("it must start with 'dtmi:'");
    };
    let (path, version) = match rest.split_once(';') {
        Some((path, version)) => (path, Some(version)),
        None => (rest, None),
    };
    if let Some(version) = version
        && (version.is_empty()
            || version.len() > 9
            || version.starts_with('0')
            || !version.chars().all(|c| c.is_ascii_digit()))
    {
        return refuse("the version after ';' must be a number from 1 to 999999999");
    }
    for segment in path.split(':') {
        let mut chars = segment.chars();
        let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !starts_with_letter || !rest_ok || segment.ends_with('_') {
            return refuse(
                "each ':'-separated segment must start with a letter and hold only letters, digits and '_'",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmis() {
        for ok in [
            "dtmi:contoso:Thermostat;1",
            "dtmi:modelDefinition:zomtmdxh:eqod32zbyl",
            "dtmi:com:example:TemperatureController;2",
        ] {
            assert!(check_dtmi("@id", ok).is_ok(), "{ok}");
        }
        for bad in [
            "contoso:thermostat",
            "dtmi:",
            "dtmi:1abc;1",
            "dtmi:a:b;0",
            "dtmi:a:b;",
            "dtmi:a b",
            "dtmi:a_",
        ] {
            assert!(check_dtmi("@id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entity_ids() {
        assert!(check_entity_id("deviceGroupId", "group_1-A").is_ok());
        assert!(check_entity_id("deviceGroupId", "group 1").is_err());
        assert!(check_entity_id("deviceGroupId", &"a".repeat(256)).is_err());
        assert!(check_enrollment_group_id("a_b").is_err());
        assert!(check_device_id("thermostat-01:$x").is_ok());
        assert!(check_device_id("bad/id").is_err());
        assert!(check_device_id("..").is_err());
        assert!(check_device_id(".").is_err());
        assert!(check_device_id("a..b").is_ok());
        assert_eq!(check_token_id("..").unwrap_err().field, "tokenId");
        assert!(check_device_id(&"d".repeat(129)).is_err());
    }
}
