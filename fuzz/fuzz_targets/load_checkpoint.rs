//! A damaged checkpoint directory: any bytes as its manifest and as its state file.
//! Loading it is a checkpoint or an error, never a panic, and never a read outside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sluice-fuzz-cp-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    // The first half is the manifest, the rest the state file it may name.
    let (manifest, state) = data.split_at(data.len() / 2);
    if std::fs::write(dir.join("manifest.json"), manifest).is_err()
        || std::fs::write(dir.join("state-0.arrow"), state).is_err()
    {
        return;
    }
    if let Ok(c) = sluice_state::load_dir(&dir) {
        for f in &c.manifest.files {
            let _ = c.read(&f.name);
        }
    }
    let _ = sluice_state::read_state_file(&dir.join("state-0.arrow"));
});
