//! Compiling the host configuration boot module for `run` and `bench`.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::cmd::Context;
use crate::{Error, Result};

/// Length of a generated root password.
const GENERATED_PASSWORD_LEN: usize = 16;

/// What a run boots with.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// A TOML file to compile.
    pub file: Option<&'a Path>,
    /// A root password that overrides the file's (or the default's).
    pub root_password: Option<&'a str>,
}

/// Compiles `source` into `out`. Returns the generated root password when
/// neither a file nor a password was given (the default config gets a random one).
pub fn compile(source: Source<'_>, out: &Path) -> Result<Option<String>> {
    let mut config = match source.file {
        // Errors come back as `FILE:LINE:COL: message`.
        Some(file) => host_config::load_file(file).map_err(Error::new)?,
        None => host_config::HostConfig::default(),
    };
    let mut generated = None;
    let password = match (source.root_password, source.file) {
        (Some(password), _) => Some(password.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(generated.insert(random_password()?).clone()),
    };
    if let Some(password) = password {
        let min = host_config::toml_front::MIN_PASSWORD_LEN;
        if password.chars().count() < min {
            return Err(Error::new(format!(
                "the root password must have at least {min} characters"
            )));
        }
        config.root_password_hash = Some(
            host_config::hash_password_random(&password).map_err(|e| Error::new(e.to_string()))?,
        );
    }
    let bytes = host_config::encode(&config);
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(out, bytes).context(|| format!("writing {}", out.display()))?;
    Ok(generated)
}

/// A password of letters and digits from the OS's randomness.
fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut urandom = fs::File::open("/dev/urandom").context(|| "opening /dev/urandom".into())?;
    let mut password = String::with_capacity(GENERATED_PASSWORD_LEN);
    let mut byte = [0u8; 1];
    // Rejection sampling keeps every symbol equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    while password.len() < GENERATED_PASSWORD_LEN {
        urandom
            .read_exact(&mut byte)
            .context(|| "reading /dev/urandom".into())?;
        if usize::from(byte[0]) < limit {
            password.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-hostcfg-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn default_config_gets_a_generated_password() {
        let out = scratch("default").join("host-config.bin");
        let source = Source {
            file: None,
            root_password: None,
        };
        let password = compile(source, &out)
            .expect("compiles")
            .expect("a generated password");
        let config = host_config::decode(&fs::read(&out).expect("module")).expect("decodes");
        let hash = config.root_password_hash.clone().expect("hash set");
        assert_eq!(
            host_config::verify_password(&hash, &password).ok(),
            Some(true)
        );
        assert_eq!(
            config,
            host_config::HostConfig {
                root_password_hash: Some(hash),
                ..Default::default()
            }
        );
        let _ = fs::remove_dir_all(out.parent().expect("dir"));
    }

    #[test]
    fn file_errors_name_the_line_and_password_overrides_the_file() {
        let dir = scratch("file");
        let toml = dir.join("host.toml");
        fs::write(&toml, "hostname = \"h1\"\nroot_password = \"from-the-file\"\n[management]\nmode = \"dhcp\"\nbogus = 1\n")
            .expect("write");
        let err = compile(
            Source {
                file: Some(&toml),
                root_password: None,
            },
            &dir.join("a.bin"),
        )
        .expect_err("bad key");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:5:", toml.display())),
            "{err}"
        );

        fs::write(
            &toml,
            "hostname = \"h1\"\nroot_password = \"from-the-file\"\n",
        )
        .expect("write");
        let out = dir.join("b.bin");
        let generated = compile(
            Source {
                file: Some(&toml),
                root_password: Some("from-the-flag"),
            },
            &out,
        )
        .expect("ok");
        assert_eq!(generated, None);
        let config = host_config::decode(&fs::read(&out).expect("module")).expect("decodes");
        assert_eq!(config.hostname, "h1");
        let hash = config.root_password_hash.expect("hash set");
        assert_eq!(
            host_config::verify_password(&hash, "from-the-flag").ok(),
            Some(true)
        );
        let short = compile(
            Source {
                file: None,
                root_password: Some("short"),
            },
            &out,
        );
        assert!(short.is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_passwords_are_16_unambiguous_characters() {
        let a = random_password().expect("password");
        let b = random_password().expect("password");
        assert_eq!(a.len(), 16);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() && !"0O1lI".contains(c)),
            "{a}"
        );
        assert_ne!(a, b);
    }
}
