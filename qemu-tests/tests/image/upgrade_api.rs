//! The upgrade API end to end: the image booted from its disk (SeaBIOS)
//! takes a next version over `PUT /upgrade?session_id=...` (curl, as the
//! README shows; the media's payload signed as another version by a second
//! trusted key), reboots on `host.reboot` (JSON-RPC), boots the new slot on
//! trial and commits it, keeping the old one; a corrupted upload and one
//! from an untrusted signer are refused and the host reboots into its old slot; a second upload while one runs is refused, a body cut short
//! frees the host for the next; a host booted without its disk says so.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use host_config::artifacts::{self, PUBLIC_KEY, SIGNED_IMAGE};
use host_config::disk_layout::{self, Role, SECTOR_BYTES};
use host_config::signed::{self, HEADER_BYTES, public_key};
use qemu_tests::{Qemu, QemuBuilder, TestDir, host_config_bin_from_env, media_from_env};
use serde_json::Value;

use super::{EXIT_TIMEOUT, health, keel};

const PASSWORD: &str = "qemu-upgrade-password";
/// A second signer the test host trusts besides the build's key: it signs
/// the "next version" (the media's payload under another version string).
const NEXT_SEED: [u8; 32] = [9; 32];
const NEXT_VERSION: &str = "9.9.9+upgrade-test";
/// A signer the host does not trust.
const STRANGER_SEED: [u8; 32] = [7; 32];
const BOOT_TIMEOUT: Duration = Duration::from_secs(150);
const HARD_TIMEOUT: Duration = Duration::from_secs(300);
/// curl's own limit for one call (an upload of ~1.3 MB into TCG).
const CURL_SECONDS: &str = "120";

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run a tool");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The host config: the root password, and as trusted keys the media's
/// signing key and the key of [`NEXT_SEED`].
fn host_config(dir: &Path) -> PathBuf {
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let key = fs::read_to_string(media.join(PUBLIC_KEY)).expect("keel-signing.pub");
    let toml = dir.join("upgrade.toml");
    fs::write(
        &toml,
        format!(
            "hostname = \"keel-upgrade-test\"\nroot_password = \"{PASSWORD}\"\n\
             trusted_keys = [\"{}\", \"{}\"]\n",
            key.trim(),
            hex(&public_key(&NEXT_SEED))
        ),
    )
    .expect("write the config");
    let module = dir.join("host-config.bin");
    let tool = host_config_bin_from_env().expect("the host-config tool");
    run(Command::new(tool)
        .arg("compile")
        .arg(&toml)
        .arg("-o")
        .arg(&module));
    module
}

/// A copy of the media's disk with [`host_config`] on its ESP.
fn prepared_disk(dir: &Path) -> PathBuf {
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let disk = dir.join("keel-disk.img");
    fs::copy(media.join(artifacts::DISK_IMAGE), &disk).expect("copy the disk image");
    let module = host_config(dir);
    let esp = disk_layout::partition(Role::Esp).first_lba * SECTOR_BYTES;
    let image = format!("{}@@{esp}", disk.display());
    run(Command::new("mmd").args(["-i", &image, "::/keel"]));
    run(Command::new("mcopy")
        .args(["-i", &image])
        .arg(&module)
        .arg("::/keel/host-config.bin"));
    disk
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The media's payload signed as `version` with `seed`, written to `dir/name`.
fn resigned(dir: &Path, name: &str, image: &[u8], version: &str, seed: &[u8; 32]) -> PathBuf {
    let payload = &image[HEADER_BYTES..];
    let mut out = signed::sign(payload, version, seed).expect("sign").to_vec();
    out.extend_from_slice(payload);
    let path = dir.join(name);
    fs::write(&path, out).expect("write the signed image");
    path
}

fn builder(name: &str, disk: &Path) -> QemuBuilder {
    keel(2, 512)
        .hard_timeout(HARD_TIMEOUT)
        .name(name)
        .expect("run dir")
        .boot_disk(disk)
}

/// Boots `disk` until GRUB's command line shows `slot_line` and `/health`
/// answers; returns QEMU and the `boot` object of `/health`.
fn boot(name: &str, disk: &Path, slot_line: &str) -> (Qemu, Value) {
    let qemu = builder(name, disk).spawn().expect("spawn QEMU");
    qemu.wait_for_serial(slot_line, BOOT_TIMEOUT)
        .expect("GRUB booted the expected slot");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-upgrade-test", "{json}");
    (qemu, json["boot"].clone())
}

fn url(qemu: &Qemu, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", qemu.http_port())
}

/// One JSON-RPC call; returns the whole answer.
fn call(qemu: &Qemu, method: &str, params: Value) -> Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            CURL_SECONDS,
            "-H",
            "Content-Type: application/json",
        ])
        .arg("--data-binary")
        .arg(body.to_string())
        .arg(url(qemu, "/jsonrpc")));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {out:?}"))
}

fn login(qemu: &Qemu) -> String {
    let answer = call(
        qemu,
        "session.login_with_password",
        serde_json::json!(["root", PASSWORD, "1.0", "upgrade-test"]),
    );
    answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("login: {answer}"))
        .to_string()
}

/// `curl -T file 'http://host/upgrade?session_id=...'`: the status and the JSON body.
fn upload(qemu: &Qemu, file: &Path, session: &str) -> (u16, Value) {
    upload_to(qemu, file, &format!("/upgrade?session_id={session}"))
}

/// A task from `task.create` for an upload to report through.
fn new_task(qemu: &Qemu, session: &str) -> String {
    let answer = call(
        qemu,
        "task.create",
        serde_json::json!([session, "upgrade", "keel.img upload"]),
    );
    answer["result"]
        .as_str()
        .unwrap_or_else(|| panic!("task.create: {answer}"))
        .to_string()
}

/// The task's record, read with the PyPI `XenAPI` SDK.
fn task_record(qemu: &Qemu, task: &str) -> Value {
    let script = format!(
        "import XenAPI, json\n\
         s = XenAPI.Session('http://127.0.0.1:{}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}')\n\
         print(json.dumps(s.xenapi.task.get_record('{task}'), default=str))\n",
        qemu.http_port()
    );
    let out = run(Command::new("python3").arg("-c").arg(&script));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

fn upload_to(qemu: &Qemu, file: &Path, path: &str) -> (u16, Value) {
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            CURL_SECONDS,
            "-w",
            "\n%{http_code} %{time_total}",
            "-T",
        ])
        .arg(file)
        .arg(url(qemu, path)));
    let (body, tail) = out.rsplit_once('\n').expect("curl's status line");
    let (code, seconds) = tail.split_once(' ').expect("status and time");
    let bytes = fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    // A figure for the report, never asserted.
    eprintln!("FIGURE upgrade_upload bytes={bytes} status={code} curl_seconds={seconds}");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    (code.trim().parse().expect("a status code"), json)
}

/// `host.software_version` read with the PyPI `XenAPI` SDK (XML-RPC).
fn software_version(qemu: &Qemu) -> Value {
    let script = format!(
        "import XenAPI, json\n\
         s = XenAPI.Session('http://127.0.0.1:{}')\n\
         s.xenapi.login_with_password('root', '{PASSWORD}')\n\
         host = s.xenapi.host.get_all()[0]\n\
         print(json.dumps(s.xenapi.host.get_software_version(host)))\n",
        qemu.http_port()
    );
    let out = run(Command::new("python3").arg("-c").arg(&script));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"))
}

/// `host.reboot`: answered, then the machine resets (QEMU exits under -no-reboot).
fn reboot(qemu: &Qemu, session: &str) {
    let host = call(qemu, "host.get_all", serde_json::json!([session]))["result"][0].clone();
    let answer = call(qemu, "host.reboot", serde_json::json!([session, host]));
    assert_eq!(answer["result"], "", "{answer}");
    let status = qemu.wait_exit(EXIT_TIMEOUT).expect("QEMU exits on reset");
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(qemu.serial().contains("power: reboot"));
}

#[test]
fn upload_reboot_trial_commit_and_a_corrupted_upload_is_refused() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = prepared_disk(dir.path());
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let image_path = media.join(SIGNED_IMAGE);
    let image = fs::read(&image_path).expect("keel.img");
    // One byte of the payload flipped: the header verifies, the digest does not.
    let mut corrupted = image.clone();
    let at = image.len() - 1000;
    corrupted[at] ^= 0x40;
    let corrupted_path = dir.path().join("corrupted.img");
    fs::write(&corrupted_path, &corrupted).expect("write the corrupted image");
    let next = resigned(dir.path(), "next.img", &image, NEXT_VERSION, &NEXT_SEED);
    let stranger = resigned(
        dir.path(),
        "stranger.img",
        &image,
        NEXT_VERSION,
        &STRANGER_SEED,
    );

    let (qemu, report) = boot(
        "upgrade-api-1",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
    );
    assert_eq!(report["committed_slot"], "a", "{report}");
    let session = login(&qemu);
    let software = software_version(&qemu);
    assert_eq!(software["keel_boot_slot"], "a", "{software}");
    assert_eq!(software["keel_boot_slot_state"], "committed", "{software}");
    assert_eq!(software["keel_committed_slot"], "a", "{software}");
    assert_eq!(
        software["keel_slot_a_version"], report["slot_a"],
        "{software}"
    );
    assert_eq!(software["keel_slot_b_version"], "", "{software}");
    assert_eq!(software["keel_last_upgrade"], "none", "{software}");

    let (status, json) = upload(&qemu, &image_path, "OpaqueRef:not-a-session");
    assert_eq!(status, 401, "{json}");
    let task = new_task(&qemu, &session);
    let (status, json) = upload_to(
        &qemu,
        &corrupted_path,
        &format!("/upgrade?session_id={session}&task_id={task}"),
    );
    assert_eq!(status, 400, "{json}");
    let record = task_record(&qemu, &task);
    assert_eq!(record["status"], "failure", "{record}");
    assert_eq!(record["error_info"][0], "IMPORT_ERROR", "{record}");
    assert_eq!(record["error_info"][1], json["error"], "{record}");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{json}"
    );
    qemu.wait_for_serial("upgrade: failed", BOOT_TIMEOUT)
        .expect("the refusal in the log");
    let (status, json) = upload(&qemu, &stranger, &session);
    assert_eq!(status, 400, "{json}");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("trusted")),
        "{json}"
    );
    reboot(&qemu, &session);
    drop(qemu);

    let (qemu, report) = boot(
        "upgrade-api-2",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
    );
    assert_eq!(report["committed_slot"], "a", "{report}");
    assert!(report["slot_b"].is_null(), "nothing was written: {report}");
    let old_version = report["slot_a"]
        .as_str()
        .expect("slot a's version")
        .to_string();
    let session = login(&qemu);
    let task = new_task(&qemu, &session);
    let (status, json) = upload_to(
        &qemu,
        &next,
        &format!("/upgrade?session_id={session}&task_id={task}"),
    );
    assert_eq!(status, 200, "{json}");
    let record = task_record(&qemu, &task);
    assert_eq!(record["status"], "success", "{record}");
    assert_eq!(record["progress"], 1.0, "{record}");
    assert_eq!(
        record["result"],
        format!("<value>{NEXT_VERSION}</value>"),
        "{record}"
    );
    assert_eq!(json["slot"], "b", "{json}");
    assert_eq!(json["version"], NEXT_VERSION, "{json}");
    let version = NEXT_VERSION;
    let (_, after) = health(&qemu);
    assert_eq!(after["boot"]["slot_b"], version, "{after}");
    let software = software_version(&qemu);
    assert_eq!(software["keel_slot_b_version"], version, "{software}");
    assert_eq!(software["keel_pending_upgrade_slot"], "b", "{software}");
    assert_eq!(software["keel_last_upgrade"], "pending", "{software}");
    reboot(&qemu, &session);
    drop(qemu);

    let (qemu, report) = boot(
        "upgrade-api-3",
        &disk,
        "cmdline: keel.boot=disk keel.slot=b keel.slot_state=trial",
    );
    qemu.wait_for_serial(
        "boot: slot b is healthy and now the committed slot",
        BOOT_TIMEOUT,
    )
    .expect("the trial commits");
    assert_eq!(report["slot"], "b", "{report}");
    assert_eq!(report["slot_b"], version, "{report}");
    assert_eq!(
        report["slot_a"], old_version,
        "the old slot is kept: {report}"
    );
    let (_, now) = health(&qemu);
    assert_eq!(now["boot"]["committed_slot"], "b", "{now}");
    assert!(now["boot"]["failed_upgrade_slot"].is_null(), "{now}");
    let software = software_version(&qemu);
    assert_eq!(software["keel_boot_slot"], "b", "{software}");
    assert_eq!(software["keel_boot_slot_state"], "trial", "{software}");
    assert_eq!(software["keel_committed_slot"], "b", "{software}");
    assert_eq!(software["keel_slot_a_version"], old_version, "{software}");
    assert_eq!(software["keel_slot_b_version"], version, "{software}");
    assert_eq!(software["keel_failed_upgrade_slot"], "", "{software}");
    assert_eq!(software["keel_last_upgrade"], "committed", "{software}");
    assert_eq!(
        software["product_version"], now["version"],
        "the running version: {software} {now}"
    );
}

/// An upload in progress makes a second one wait its turn (409); the first,
/// cut short by its client, is answered 400 and frees the host, and the next
/// upload is accepted. Nothing is marked for trial by the cut one, and a cut
/// upload over a slot marked for trial takes that trial back.
#[test]
fn one_upload_at_a_time_and_a_cut_upload_frees_the_host() {
    let dir = TestDir::for_current_test().expect("test dir");
    let disk = prepared_disk(dir.path());
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let image_path = media.join(SIGNED_IMAGE);
    let image = fs::read(&image_path).expect("keel.img");
    let (qemu, _) = boot(
        "upgrade-api-busy",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
    );
    let session = login(&qemu);
    let task = new_task(&qemu, &session);

    let mut first =
        TcpStream::connect(("127.0.0.1", qemu.http_port())).expect("connect to the image");
    first
        .set_read_timeout(Some(BOOT_TIMEOUT))
        .expect("read timeout");
    write!(
        first,
        "PUT /upgrade?session_id={session}&task_id={task} HTTP/1.1\r\nHost: keel\r\nContent-Length: {}\r\n\r\n",
        image.len()
    )
    .expect("send the head");
    let sent = 100 * 1024;
    first
        .write_all(&image[..sent])
        .expect("send part of the body");
    qemu.wait_for_serial("upgrade: receiving an image for slot b", BOOT_TIMEOUT)
        .expect("the first upload started");
    // The SDK follows the upload through its task while it runs.
    let expected = (sent * 100 / image.len()) as f64 / 100.0;
    let mut record = task_record(&qemu, &task);
    for _ in 0..50 {
        if record["progress"].as_f64() == Some(expected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        record = task_record(&qemu, &task);
    }
    assert_eq!(record["status"], "pending", "{record}");
    assert_eq!(
        record["progress"].as_f64(),
        Some(expected),
        "progress is the share received: {record}"
    );

    let (status, json) = upload(&qemu, &image_path, &session);
    assert_eq!(status, 409, "{json}");

    first.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = String::new();
    first
        .read_to_string(&mut answer)
        .expect("the answer to the cut upload");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(
        answer.contains("ended before its Content-Length"),
        "{answer}"
    );
    qemu.wait_for_serial("nothing is marked for trial", BOOT_TIMEOUT)
        .expect("the cut upload is reported");
    let record = task_record(&qemu, &task);
    assert_eq!(record["status"], "failure", "{record}");
    assert_eq!(record["error_info"][0], "INTERNAL_ERROR", "{record}");
    let (_, now) = health(&qemu);
    assert!(now["boot"]["slot_b"].is_null(), "{now}");

    let (status, json) = upload(&qemu, &image_path, &session);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["slot"], "b", "{json}");
    let (_, now) = health(&qemu);
    assert_eq!(now["boot"]["pending_trial_slot"], "b", "{now}");

    // Another upload to b, cut once its header verified: b's old image is
    // gone, so its trial is taken back and the next boot stays on a.
    let mut again =
        TcpStream::connect(("127.0.0.1", qemu.http_port())).expect("connect to the image");
    again
        .set_read_timeout(Some(BOOT_TIMEOUT))
        .expect("read timeout");
    write!(
        again,
        "PUT /upgrade?session_id={session} HTTP/1.1\r\nHost: keel\r\nContent-Length: {}\r\n\r\n",
        image.len()
    )
    .expect("send the head");
    again
        .write_all(&image[..100 * 1024])
        .expect("send part of the body");
    let mut now = health(&qemu).1;
    for _ in 0..50 {
        if now["boot"]["slot_b"].is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        now = health(&qemu).1;
    }
    assert!(now["boot"]["slot_b"].is_null(), "slot b overwritten: {now}");
    assert!(now["boot"]["pending_trial_slot"].is_null(), "{now}");
    again.shutdown(Shutdown::Write).expect("half-close");
    let mut answer = String::new();
    again.read_to_string(&mut answer).expect("the answer");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    reboot(&qemu, &session);
    drop(qemu);
    let (_, report) = boot(
        "upgrade-api-busy-2",
        &disk,
        "cmdline: keel.boot=disk keel.slot=a keel.slot_state=committed",
    );
    assert!(report["failed_upgrade_slot"].is_null(), "{report}");
    assert!(report["slot_b"].is_null(), "{report}");
}

/// Booted with `-kernel` (no keel disk): the upload is refused with 503 and
/// a reason, not pretended; an upload larger than a slot gets 413 at once.
#[test]
fn a_host_without_its_boot_disk_answers_503() {
    let builder = keel(2, 512).hard_timeout(HARD_TIMEOUT);
    let module = host_config(builder.dir());
    let qemu = builder.initrd(module).spawn().expect("spawn QEMU");
    let (_, json) = health(&qemu);
    assert_eq!(json["hostname"], "keel-upgrade-test", "{json}");
    assert!(json["boot"].is_null(), "{json}");
    let session = login(&qemu);
    let software = software_version(&qemu);
    assert_eq!(software["keel_boot_slot"], "", "{software}");
    assert_eq!(software["keel_last_upgrade"], "none", "{software}");
    let media = media_from_env().expect("the boot media (KEEL_MEDIA)");
    let (status, json) = upload(&qemu, &media.join(SIGNED_IMAGE), &session);
    assert_eq!(status, 503, "{json}");
    assert!(
        json["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not boot from a keel disk")),
        "{json}"
    );

    // More than a slot holds is refused from its head, before any body.
    let mut raw =
        TcpStream::connect(("127.0.0.1", qemu.http_port())).expect("connect to the image");
    raw.set_read_timeout(Some(BOOT_TIMEOUT))
        .expect("read timeout");
    write!(
        raw,
        "PUT /upgrade?session_id={session} HTTP/1.1\r\nHost: keel\r\n\
         Content-Length: 1000000000000\r\nExpect: 100-continue\r\n\r\n"
    )
    .expect("send the head");
    let mut answer = String::new();
    raw.read_to_string(&mut answer).expect("the answer");
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
}
