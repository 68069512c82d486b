//! Config parsing (TOML plus Tern's validation) and the XEP-0215 module's options.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &str| {
    let Ok(config) = tern::config::Config::parse(data, Path::new(".")) else {
        return;
    };
    let mut hosts: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
    hosts.push("localhost".to_string());
    for host in &hosts {
        let options = config.module_options(host, "external_services");
        let _ = tern::modules::external_services::read_settings(&options);
    }
});
