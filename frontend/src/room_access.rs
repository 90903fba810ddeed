//! Whether a remote server may be served a room, or send to it: the room's `m.room.server_acl`
//! (`roomserver.server_allowed`, the core's rule) and, for reads, a joined member of that server
//! in the current state (`roomserver.server_in_room`). The ACL is checked first, as Synapse does,
//! and its refusal is Synapse's: 403 M_FORBIDDEN "Server is banned from room". Both checks are
//! SQL fragments that each handler puts into its one statement.

use crate::errors::ApiError;

/// Synapse's message for a server an ACL denies (federation_server.py check_server_matches_acl).
pub const BANNED: &str = "Server is banned from room";

/// The ACL lets server `$server` take part in room `$room` (SQL, boolean). An unknown room, or one
/// with no current state, has no ACL to apply: not a denial (`IS NOT FALSE`); what else the
/// handler checks (in the room, the room known) refuses such a request.
#[macro_export]
macro_rules! acl_allows {
    ($room:literal, $server:literal) => {
        concat!("(roomserver.server_allowed(", $room, ", ", $server, ") IS NOT FALSE)")
    };
}

/// Server `$server` has a joined member in room `$room` (SQL, boolean; false for an unknown room).
#[macro_export]
macro_rules! in_room {
    ($room:literal, $server:literal) => {
        concat!("roomserver.server_in_room(", $room, ", ", $server, ")")
    };
}

/// The ACL's refusal, if it denies.
pub fn check_acl(allowed: bool) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(BANNED))
    }
}

/// A read's access: the ACL first, then membership.
pub fn check_read_access(allowed: bool, in_room: bool) -> Result<(), ApiError> {
    check_acl(allowed)?;
    if in_room {
        Ok(())
    } else {
        Err(ApiError::forbidden("Host not in room"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acl_is_checked_before_membership() {
        assert!(check_read_access(true, true).is_ok());
        let denied = check_read_access(false, true).unwrap_err();
        assert_eq!((denied.status.as_u16(), denied.errcode, denied.message.as_str()), (403, "M_FORBIDDEN", BANNED));
        // Denied and not in the room: the ACL's answer, as Synapse gives it.
        assert_eq!(check_read_access(false, false).unwrap_err().message, BANNED);
        let outside = check_read_access(true, false).unwrap_err();
        assert_eq!((outside.status.as_u16(), outside.errcode, outside.message.as_str()), (403, "M_FORBIDDEN", "Host not in room"));
    }

    #[test]
    fn the_sql_fragments() {
        assert_eq!(acl_allows!("$2", "$1"), "(roomserver.server_allowed($2, $1) IS NOT FALSE)");
        assert_eq!(in_room!("e.room_id", "$1"), "roomserver.server_in_room(e.room_id, $1)");
    }
}
