//! Built-in modules, one file (or folder) each. Enable them per host with
//! `modules_enabled`.

pub mod blocklist;
pub mod carbons;
pub mod csi;
pub mod disco;
pub mod external_services;
pub mod last;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod private;
pub mod register;
pub mod roster;
pub mod server_contact_info;
pub mod smacks;
pub mod time;
pub mod turn_external;
pub mod vcard;
pub mod version;

use crate::module::ModuleDescriptor;

/// Every compiled-in module.
pub const BUILTIN: &[ModuleDescriptor] = &[
    disco::MODULE,
    ping::MODULE,
    version::MODULE,
    time::MODULE,
    external_services::MODULE,
    turn_external::MODULE,
    roster::MODULE,
    presence::MODULE,
    offline::MODULE,
    vcard::MODULE,
    last::MODULE,
    private::MODULE,
    blocklist::MODULE,
    carbons::MODULE,
    server_contact_info::MODULE,
    register::MODULE,
    csi::MODULE,
    smacks::MODULE,
];
