//! `image`: OCI layouts and docker archives written here by the tests (tar,
//! sha256, index.json; no network), unpacked into a fresh cache each.

use packrun::image::{self, ImageError, Source};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

// ------------------------------------------------------------------ writers

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One entry of a layer tar.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    HardLink(&'a str, &'a str),
    CharDev(&'a str, u32, u32),
}

const MTIME: u64 = 1_600_000_000;

/// A tar of `entries`, names written as given (`..` too: the tar crate's
/// own setters refuse it, and these tests need hostile layers).
fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        let (name, data): (&str, &[u8]) = match e {
            E::Dir(n, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                (n, &[])
            }
            E::File(n, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (n, data)
            }
            E::Symlink(n, target) | E::HardLink(n, target) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                raw_field(&mut h.as_old_mut().linkname, target);
                (n, &[])
            }
            E::CharDev(n, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                (n, &[])
            }
        };
        raw_field(&mut h.as_old_mut().name, name);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn raw_field(field: &mut [u8], value: &str) {
    assert!(
        value.len() < field.len(),
        "{value} is too long for a ustar field"
    );
    field.fill(0);
    field[..value.len()].copy_from_slice(value.as_bytes());
}

#[derive(Clone, Copy)]
enum Z {
    Plain,
    Gzip,
    Zstd,
}

fn compress(z: Z, data: &[u8]) -> Vec<u8> {
    match z {
        Z::Plain => data.to_vec(),
        Z::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Z::Zstd => zstd::encode_all(data, 1).unwrap(),
    }
}

fn layer_type(z: Z) -> &'static str {
    match z {
        Z::Plain => "application/vnd.oci.image.layer.v1.tar",
        Z::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Z::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

fn host_arch() -> String {
    image::host_platform()
        .strip_prefix("linux/")
        .unwrap()
        .to_string()
}

/// An OCI image layout being written.
struct Layout {
    dir: PathBuf,
    index: Vec<Value>,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            index: Vec::new(),
        }
    }

    /// Stores a blob; returns its descriptor.
    fn blob(&self, media_type: &str, data: &[u8]) -> Value {
        let hex = sha(data);
        fs::write(self.dir.join("blobs/sha256").join(&hex), data).unwrap();
        json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": data.len()})
    }

    fn blob_path(&self, desc: &Value) -> PathBuf {
        let d = desc["digest"].as_str().unwrap();
        self.dir
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    }

    /// A manifest of `layers` (tars, compressed as told) and a config with
    /// `run` as its `config`; returns the manifest's descriptor, not yet in
    /// the index.
    fn manifest(&self, layers: &[(Z, Vec<u8>)], run: Value, arch: &str) -> (Value, Vec<Value>) {
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|(_, t)| format!("sha256:{}", sha(t)))
            .collect();
        let config = json!({
            "architecture": arch, "os": "linux", "config": run,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let layers: Vec<Value> = layers
            .iter()
            .map(|(z, t)| self.blob(layer_type(*z), &compress(*z, t)))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers,
        });
        let desc = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        );
        (desc, layers)
    }

    /// Adds an untagged image of layer descriptors made by hand, whose
    /// config claims `diff_ids` (hex), to the index.
    fn image_of(&mut self, layers: Vec<Value>, diff_ids: &[String]) {
        let diff_ids: Vec<String> = diff_ids.iter().map(|h| format!("sha256:{h}")).collect();
        let config = json!({"architecture": host_arch(), "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}});
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            config.to_string().as_bytes(),
        );
        let manifest = json!({"schemaVersion": 2, "config": config, "layers": layers});
        let desc = self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            manifest.to_string().as_bytes(),
        );
        self.index.push(desc);
        self.write_index();
    }

    /// Adds an image to the index under `tag`; returns its layer descriptors.
    fn image(&mut self, tag: Option<&str>, layers: &[(Z, Vec<u8>)], run: Value) -> Vec<Value> {
        let (mut desc, layers) = self.manifest(layers, run, &host_arch());
        if let Some(t) = tag {
            desc["annotations"] = json!({"org.opencontainers.image.ref.name": t});
        }
        self.index.push(desc);
        self.write_index();
        layers
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "manifests": self.index});
        fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }

    fn source(&self, tag: Option<&str>) -> Source {
        Source::Layout {
            dir: self.dir.clone(),
            tag: tag.map(String::from),
        }
    }
}

/// A temp dir with `layout/`, `cache/` and `outside/` in it.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("outside")).unwrap();
        Fixture { tmp }
    }
    fn layout(&self, name: &str) -> Layout {
        Layout::new(&self.tmp.path().join(name))
    }
    fn cache(&self) -> PathBuf {
        self.tmp.path().join("cache")
    }
    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }
    /// Everything in the cache directory but lock files.
    fn cache_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.cache())
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".lock"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn simple_layer(text: &str) -> (Z, Vec<u8>) {
    (Z::Plain, tar(&[E::File("hello", text.as_bytes(), 0o644)]))
}

// -------------------------------------------------------------------- tests

#[test]
fn two_layers_merge_with_whiteouts_and_an_opaque_directory() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    let lower = tar(&[
        E::Dir("etc/", 0o755),
        E::File("etc/keep", b"kept", 0o644),
        E::File("etc/gone", b"deleted above", 0o644),
        E::Dir("data/", 0o750),
        E::File("data/old", b"old", 0o644),
        E::Dir("data/sub/", 0o755),
        E::File("data/sub/older", b"older", 0o644),
        E::File("bin/tool", b"#!/bin/sh\n", 0o755),
    ]);
    let upper = tar(&[
        E::File("etc/.wh.gone", b"", 0o644),
        // Written before the opaque marker of its own layer: it stays.
        E::File("data/new", b"new", 0o600),
        E::File("data/.wh..wh..opq", b"", 0o644),
        E::HardLink("etc/keep-too", "etc/keep"),
        E::Symlink("etc/abs", "/etc/keep"),
        E::Symlink("etc/rel", "keep"),
    ]);
    l.image(None, &[(Z::Plain, lower), (Z::Plain, upper)], json!({}));
    let img = image::unpack(&l.source(None), &f.cache()).unwrap();
    let r = &img.rootfs;
    assert!(img.fresh);
    assert_eq!(fs::read_to_string(r.join("etc/keep")).unwrap(), "kept");
    assert!(
        !r.join("etc/gone").exists(),
        "whiteout deletes the lower file"
    );
    assert!(
        !r.join("etc/.wh.gone").exists(),
        "whiteouts are not content"
    );
    assert!(!r.join("data/old").exists(), "opaque drops lower entries");
    assert!(
        !r.join("data/sub").exists(),
        "opaque drops lower directories"
    );
    assert_eq!(fs::read_to_string(r.join("data/new")).unwrap(), "new");
    assert!(!r.join("data/.wh..wh..opq").exists());
    let keep = fs::metadata(r.join("etc/keep")).unwrap();
    assert_eq!(
        fs::metadata(r.join("etc/keep-too")).unwrap().ino(),
        keep.ino()
    );
    assert_eq!(
        fs::read_link(r.join("etc/abs")).unwrap(),
        Path::new("/etc/keep")
    );
    assert_eq!(fs::read_link(r.join("etc/rel")).unwrap(), Path::new("keep"));
    let mode = |p: &str| fs::symlink_metadata(r.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("bin/tool"), 0o755);
    assert_eq!(mode("data/new"), 0o600);
    assert_eq!(mode("data"), 0o750);
    assert_eq!(mode("bin"), 0o755, "implicit directories are 0755");
    assert_eq!(keep.mtime() as u64, MTIME);
    assert_eq!(
        fs::metadata(r.join("data")).unwrap().mtime() as u64,
        MTIME,
        "directory times are set after their contents"
    );
    assert_eq!(img.digest.len(), "sha256:".len() + 64);
    assert!(img.digest.starts_with("sha256:"));
    assert_eq!(img.platform, image::host_platform());
    assert_eq!(
        img.rootfs,
        f.cache()
            .join(img.digest.strip_prefix("sha256:").unwrap())
            .join("rootfs")
    );
}

#[test]
fn env_workdir_entrypoint_cmd_and_user_come_from_the_image_config() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(
        Some("v1"),
        &[simple_layer("hi")],
        json!({
            "Env": ["PATH=/usr/bin:/bin", "EMPTY=", "A=b=c"],
            "WorkingDir": "/work",
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["echo hi"],
            "User": "1000:100",
        }),
    );
    let img = image::unpack(&l.source(Some("v1")), &f.cache()).unwrap();
    let c = &img.config;
    assert_eq!(
        c.env,
        vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("EMPTY".into(), String::new()),
            ("A".into(), "b=c".into())
        ]
    );
    assert_eq!(c.working_dir.as_deref(), Some("/work"));
    assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(c.cmd, ["echo hi"]);
    assert_eq!(c.user.as_deref(), Some("1000:100"));
    // The same from the cache.
    let again = image::unpack(&l.source(Some("v1")), &f.cache()).unwrap();
    assert!(!again.fresh);
    assert_eq!(again.config, img.config);
}

#[test]
fn a_flipped_byte_in_a_layer_blob_is_a_digest_error_naming_the_blob() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    let layers = l.image(None, &[simple_layer("precious")], json!({}));
    let blob = l.blob_path(&layers[0]);
    let mut bytes = fs::read(&blob).unwrap();
    let at = bytes.windows(8).position(|w| w == b"precious").unwrap();
    bytes[at] ^= 0x20;
    fs::write(&blob, &bytes).unwrap();
    let err = image::unpack(&l.source(None), &f.cache()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&blob.display().to_string()), "{msg}");
    assert!(msg.contains(layers[0]["digest"].as_str().unwrap()), "{msg}");
    assert!(f.cache_names().is_empty(), "left: {:?}", f.cache_names());
}

#[test]
fn a_truncated_or_missing_blob_is_named() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    let layers = l.image(None, &[simple_layer("x")], json!({}));
    let blob = l.blob_path(&layers[0]);
    let bytes = fs::read(&blob).unwrap();
    fs::write(&blob, &bytes[..100]).unwrap();
    let msg = image::unpack(&l.source(None), &f.cache())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&blob.display().to_string()) && msg.contains("size"),
        "{msg}"
    );
    fs::remove_file(&blob).unwrap();
    let msg = image::unpack(&l.source(None), &f.cache())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&blob.display().to_string()) && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn a_layer_entry_with_dotdot_is_refused_naming_the_entry() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(
        None,
        &[(Z::Plain, tar(&[E::File("../evil", b"x", 0o644)]))],
        json!({}),
    );
    let err = image::unpack(&l.source(None), &f.cache()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::Escape { .. }), "{msg}");
    assert!(msg.contains("`../evil`"), "{msg}");
    assert!(!f.cache().join("evil").exists());
    assert!(!f.tmp.path().join("evil").exists());
    assert!(f.cache_names().is_empty(), "left: {:?}", f.cache_names());
}

#[test]
fn a_file_written_through_an_absolute_symlink_is_refused_and_nothing_lands_outside() {
    let f = Fixture::new();
    let outside = f.outside();
    let target = outside.to_str().unwrap();
    for layers in [
        // One layer, and the symlink in a lower layer.
        vec![tar(&[
            E::Symlink("link", target),
            E::File("link/x", b"pwned", 0o644),
        ])],
        vec![
            tar(&[E::Symlink("link", target)]),
            tar(&[E::File("link/x", b"pwned", 0o644)]),
        ],
    ] {
        let mut l = f.layout("img");
        let layers: Vec<(Z, Vec<u8>)> = layers.into_iter().map(|t| (Z::Plain, t)).collect();
        l.image(None, &layers, json!({}));
        let err = image::unpack(&l.source(None), &f.cache()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::Escape { .. }), "{msg}");
        assert!(msg.contains("`link/x`") && msg.contains(target), "{msg}");
        assert!(!outside.join("x").exists(), "written outside the root");
        fs::remove_dir_all(&l.dir).unwrap();
    }
    // The same with the path the task names: /etc.
    let mut l = f.layout("img");
    l.image(
        None,
        &[(
            Z::Plain,
            tar(&[
                E::Symlink("link", "/etc"),
                E::File("link/packrun-image-test", b"pwned", 0o644),
            ]),
        )],
        json!({}),
    );
    assert!(matches!(
        image::unpack(&l.source(None), &f.cache()),
        Err(ImageError::Escape { .. })
    ));
    assert!(!Path::new("/etc/packrun-image-test").exists());
}

#[test]
fn hard_links_whose_target_leaves_the_root_are_refused() {
    let f = Fixture::new();
    let outside = f.outside();
    fs::write(outside.join("secret"), "s").unwrap();
    let through_symlink = format!("{}/secret", outside.display());
    let cases: [Vec<E>; 3] = [
        vec![E::HardLink("h", "../../outside/secret")],
        vec![
            E::Symlink("out", outside.to_str().unwrap()),
            E::HardLink("h", "out/secret"),
        ],
        vec![E::HardLink("h", &through_symlink)],
    ];
    for (i, entries) in cases.iter().enumerate() {
        let mut l = f.layout(&format!("img{i}"));
        l.image(None, &[(Z::Plain, tar(entries))], json!({}));
        let err = image::unpack(&l.source(None), &f.cache()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`h`"), "case {i}: {msg}");
        assert_eq!(fs::metadata(outside.join("secret")).unwrap().nlink(), 1);
    }
}

#[test]
fn relative_symlinks_are_followed_inside_the_root_and_not_above_it() {
    let f = Fixture::new();
    let mut l = f.layout("ok");
    l.image(
        None,
        &[
            (
                Z::Plain,
                tar(&[E::Dir("usr/lib/", 0o755), E::Symlink("lib", "usr/lib")]),
            ),
            (Z::Plain, tar(&[E::File("lib/libx.so", b"elf", 0o644)])),
        ],
        json!({}),
    );
    let img = image::unpack(&l.source(None), &f.cache()).unwrap();
    assert_eq!(
        fs::read_to_string(img.rootfs.join("usr/lib/libx.so")).unwrap(),
        "elf"
    );
    assert!(fs::symlink_metadata(img.rootfs.join("lib"))
        .unwrap()
        .file_type()
        .is_symlink());

    let mut l = f.layout("bad");
    l.image(
        None,
        &[(
            Z::Plain,
            tar(&[
                E::Dir("a/", 0o755),
                E::Symlink("a/up", "../../../outside"),
                E::File("a/up/x", b"pwned", 0o644),
            ]),
        )],
        json!({}),
    );
    let msg = image::unpack(&l.source(None), &f.cache())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`a/up/x`") && msg.contains("above the root"),
        "{msg}"
    );
    assert!(!f.outside().join("x").exists());
}

#[test]
fn the_same_image_twice_is_one_entry_and_two_images_share_the_cache() {
    let f = Fixture::new();
    let mut a = f.layout("a");
    a.image(None, &[simple_layer("a")], json!({}));
    let mut b = f.layout("b");
    b.image(None, &[simple_layer("b")], json!({}));
    let first = image::unpack(&a.source(None), &f.cache()).unwrap();
    let second = image::unpack(&a.source(None), &f.cache()).unwrap();
    assert!(first.fresh && !second.fresh);
    assert_eq!(first.rootfs, second.rootfs);
    let other = image::unpack(&b.source(None), &f.cache()).unwrap();
    assert_ne!(other.rootfs, first.rootfs);
    assert_eq!(fs::read_to_string(other.rootfs.join("hello")).unwrap(), "b");
    let entries = image::list(&f.cache()).unwrap();
    let mut digests: Vec<&str> = entries.iter().map(|e| e.digest.as_str()).collect();
    digests.sort();
    let mut want = [first.digest.as_str(), other.digest.as_str()];
    want.sort();
    assert_eq!(digests, want);
    assert!(entries.iter().all(|e| e.size_bytes > 0));
    assert!(entries.iter().all(|e| e.platform == image::host_platform()));
    // A copy of the layout elsewhere is the same image: the same entry.
    let copy = f.tmp.path().join("copy");
    fs::create_dir(&copy).unwrap();
    for p in ["oci-layout", "index.json"] {
        fs::copy(a.dir.join(p), copy.join(p)).unwrap();
    }
    fs::create_dir_all(copy.join("blobs/sha256")).unwrap();
    for e in fs::read_dir(a.dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), copy.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    let src = Source::Layout {
        dir: copy,
        tag: None,
    };
    let third = image::unpack(&src, &f.cache()).unwrap();
    assert!(!third.fresh);
    assert_eq!(image::list(&f.cache()).unwrap().len(), 2);
}

#[test]
fn threads_unpacking_one_image_at_once_unpack_it_once() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    l.image(
        None,
        &[(Z::Gzip, tar(&[E::File("big", &big, 0o644)]))],
        json!({}),
    );
    let src = l.source(None);
    let cache = f.cache();
    let barrier = std::sync::Barrier::new(4);
    let images: Vec<image::Image> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    image::unpack(&src, &cache).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(images.iter().filter(|i| i.fresh).count(), 1);
    assert!(images.iter().all(|i| i.rootfs == images[0].rootfs));
    assert_eq!(fs::read(images[0].rootfs.join("big")).unwrap(), big);
    let hex = images[0].digest.strip_prefix("sha256:").unwrap();
    assert_eq!(f.cache_names(), [hex], "one entry, no staging left");
}

#[test]
fn processes_unpacking_one_image_at_once_unpack_it_once() {
    // The test binary runs itself as the two packruns.
    if let Ok(dir) = std::env::var("PACKRUN_IMAGE_TEST_CHILD") {
        let (layout, cache) = dir.split_once('\n').unwrap();
        let src = Source::Layout {
            dir: layout.into(),
            tag: None,
        };
        let img = image::unpack(&src, Path::new(cache)).unwrap();
        println!("fresh={}", img.fresh);
        return;
    }
    let f = Fixture::new();
    let mut l = f.layout("img");
    let big: Vec<u8> = (0..4 << 20).map(|i| (i % 13) as u8).collect();
    l.image(
        None,
        &[(Z::Zstd, tar(&[E::File("big", &big, 0o644)]))],
        json!({}),
    );
    let spawn = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "processes_unpacking_one_image_at_once_unpack_it_once",
                "--nocapture",
            ])
            .env(
                "PACKRUN_IMAGE_TEST_CHILD",
                format!("{}\n{}", l.dir.display(), f.cache().display()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(), spawn()];
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let fresh = outputs.iter().filter(|o| o.contains("fresh=true")).count();
    let cached = outputs.iter().filter(|o| o.contains("fresh=false")).count();
    assert_eq!((fresh, cached), (1, 1), "{outputs:?}");
    assert_eq!(f.cache_names().len(), 1, "{:?}", f.cache_names());
}

#[test]
fn gzip_and_zstd_layers_unpack() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(
        None,
        &[
            (Z::Gzip, tar(&[E::File("gz", b"gzip", 0o644)])),
            (Z::Zstd, tar(&[E::File("zst", b"zstd", 0o644)])),
            (Z::Plain, tar(&[E::File("plain", b"tar", 0o644)])),
        ],
        json!({}),
    );
    let img = image::unpack(&l.source(None), &f.cache()).unwrap();
    for (name, text) in [("gz", "gzip"), ("zst", "zstd"), ("plain", "tar")] {
        assert_eq!(fs::read_to_string(img.rootfs.join(name)).unwrap(), text);
    }
}

#[test]
fn a_compressed_layer_whose_content_differs_from_its_diff_id_is_refused() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    // Build by hand: a config whose diff_id is of another tar.
    let real = tar(&[E::File("a", b"1", 0o644)]);
    let claimed = tar(&[E::File("a", b"2", 0o644)]);
    let layer = l.blob(layer_type(Z::Gzip), &compress(Z::Gzip, &real));
    l.image_of(vec![layer], &[sha(&claimed)]);
    let msg = image::unpack(&l.source(None), &f.cache())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("(uncompressed)") && msg.contains(&sha(&claimed)),
        "{msg}"
    );
    assert!(f.cache_names().is_empty(), "left: {:?}", f.cache_names());
}

/// A docker-archive as `docker save` writes it: manifest.json, the config
/// as `<hex>.json`, one layer as `<id>/layer.tar` and one (gzip) under
/// `blobs/sha256/`, plus a layer repeated as a symlink.
fn docker_archive(path: &Path, corrupt_diff_id: bool) {
    let l1 = tar(&[E::File("etc/os-release", b"ID=test\n", 0o644)]);
    let l2 = tar(&[E::File("app", b"run me", 0o755)]);
    let l2gz = compress(Z::Gzip, &l2);
    let mut diff_ids = vec![
        format!("sha256:{}", sha(&l1)),
        format!("sha256:{}", sha(&l2)),
    ];
    if corrupt_diff_id {
        diff_ids[0] = format!("sha256:{}", sha(b"something else"));
    }
    diff_ids.push(diff_ids[0].clone());
    let config = json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Env": ["X=1"], "Cmd": ["/app"], "WorkingDir": "/"},
        "container_config": {"Hostname": "docker-only field"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let chex = sha(config.as_bytes());
    let manifest = json!([{
        "Config": format!("{chex}.json"),
        "RepoTags": ["test:latest"],
        "Layers": ["aaaa/layer.tar", format!("blobs/sha256/{}", sha(&l2gz)), "bbbb/layer.tar"],
    }])
    .to_string();
    let mut b = tar::Builder::new(fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("aaaa/layer.tar", &l1);
    add(&format!("blobs/sha256/{}", sha(&l2gz)), &l2gz);
    add(&format!("{chex}.json"), config.as_bytes());
    add("manifest.json", manifest.as_bytes());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "bbbb/layer.tar", "../aaaa/layer.tar")
        .unwrap();
    b.finish().unwrap();
}

#[test]
fn a_docker_archive_unpacks_with_its_layers_checked_against_the_diff_ids() {
    let f = Fixture::new();
    let file = f.tmp.path().join("saved.tar");
    docker_archive(&file, false);
    let src = image::parse_source("docker-archive:saved.tar", f.tmp.path())
        .unwrap()
        .unwrap();
    let img = image::unpack(&src, &f.cache()).unwrap();
    assert_eq!(
        fs::read_to_string(img.rootfs.join("etc/os-release")).unwrap(),
        "ID=test\n"
    );
    assert_eq!(
        fs::symlink_metadata(img.rootfs.join("app")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(img.config.env, [("X".to_string(), "1".to_string())]);
    assert_eq!(img.config.cmd, ["/app"]);
    assert_eq!(img.config.working_dir.as_deref(), Some("/"));
    assert_eq!(img.platform, image::host_platform());

    let bad = f.tmp.path().join("bad.tar");
    docker_archive(&bad, true);
    let src = Source::DockerArchive { file: bad.clone() };
    let err = image::unpack(&src, &f.cache()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&bad.display().to_string()) && msg.contains("member aaaa/layer.tar"),
        "{msg}"
    );
}

#[test]
fn an_unsupported_layer_media_type_is_named() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    let layer = l.blob("application/vnd.example.squashfs", b"hsqs");
    l.image_of(vec![layer.clone()], &[sha(b"hsqs")]);
    let err = image::unpack(&l.source(None), &f.cache()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::MediaType { .. }), "{msg}");
    assert!(
        msg.contains("application/vnd.example.squashfs")
            && msg.contains(&l.blob_path(&layer).display().to_string()),
        "{msg}"
    );
}

#[test]
fn a_missing_tag_lists_the_tags_there_are() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(Some("v1"), &[simple_layer("1")], json!({}));
    l.image(Some("v2"), &[simple_layer("2")], json!({}));
    let err = image::unpack(&l.source(Some("v3")), &f.cache()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::NoTag { .. }), "{msg}");
    assert!(
        msg.contains("`v3`") && msg.contains("v1, v2") && msg.contains("index.json"),
        "{msg}"
    );
    // No tag and two images: name one.
    let msg = image::unpack(&l.source(None), &f.cache())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("v1") && msg.contains("v2") && msg.contains("TAG"),
        "{msg}"
    );
    let img = image::unpack(&l.source(Some("v2")), &f.cache()).unwrap();
    assert_eq!(fs::read_to_string(img.rootfs.join("hello")).unwrap(), "2");
}

#[test]
fn a_multi_platform_index_takes_this_machines_platform() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    let other = if host_arch() == "s390x" {
        "riscv64"
    } else {
        "s390x"
    };
    let mut entries = Vec::new();
    for (arch, text) in [(other, "theirs"), (host_arch().as_str(), "ours")] {
        let (mut desc, _) = l.manifest(&[simple_layer(text)], json!({}), arch);
        desc["platform"] = json!({"os": "linux", "architecture": arch});
        entries.push(desc);
    }
    let nested = json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let mut desc = l.blob(
        "application/vnd.oci.image.index.v1+json",
        nested.to_string().as_bytes(),
    );
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": "multi"});
    l.index.push(desc);
    l.write_index();
    let img = image::unpack(&l.source(Some("multi")), &f.cache()).unwrap();
    assert_eq!(img.platform, image::host_platform());
    assert_eq!(
        fs::read_to_string(img.rootfs.join("hello")).unwrap(),
        "ours"
    );

    // An image only for another machine is refused, naming both platforms.
    let mut o = f.layout("other");
    let (desc, _) = o.manifest(&[simple_layer("x")], json!({}), other);
    o.index.push(desc);
    o.write_index();
    let msg = image::unpack(&o.source(None), &f.cache())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!("linux/{other}")) && msg.contains(&image::host_platform()),
        "{msg}"
    );
}

#[test]
fn check_finds_a_changed_tree_and_remove_takes_entries_by_prefix() {
    let f = Fixture::new();
    let mut a = f.layout("a");
    a.image(None, &[simple_layer("a")], json!({}));
    let mut b = f.layout("b");
    b.image(None, &[simple_layer("b")], json!({}));
    let ia = image::unpack(&a.source(None), &f.cache()).unwrap();
    let ib = image::unpack(&b.source(None), &f.cache()).unwrap();
    let checked = image::check(&f.cache()).unwrap();
    assert_eq!(checked.len(), 2);
    assert!(checked.iter().all(|(_, r)| r.is_ok()), "{checked:?}");

    fs::write(ia.rootfs.join("hello"), "tampered").unwrap();
    let checked = image::check(&f.cache()).unwrap();
    let (_, bad) = checked.iter().find(|(d, _)| *d == ia.digest).unwrap();
    let msg = bad.as_ref().unwrap_err().to_string();
    assert!(msg.contains(&ia.rootfs.display().to_string()), "{msg}");
    let (_, good) = checked.iter().find(|(d, _)| *d == ib.digest).unwrap();
    assert!(good.is_ok());

    let prefix = &ia.digest[..7 + 12];
    assert_eq!(
        image::remove(&f.cache(), prefix).unwrap(),
        [ia.digest.as_str()]
    );
    assert!(!ia.rootfs.exists());
    let left: Vec<String> = image::list(&f.cache())
        .unwrap()
        .into_iter()
        .map(|e| e.digest)
        .collect();
    assert_eq!(left, [ib.digest.as_str()]);
    assert_eq!(f.cache_names().len(), 1, "{:?}", f.cache_names());
    // Unpacked again after removal: fresh.
    assert!(image::unpack(&a.source(None), &f.cache()).unwrap().fresh);
}

#[test]
fn staging_left_by_a_dead_process_is_removed_by_the_next_unpack() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(None, &[simple_layer("x")], json!({}));
    fs::create_dir_all(f.cache()).unwrap();
    // Above the kernel's largest pid_max: no live process has it.
    let stale = f.cache().join(format!("{}.tmp-4194305-0", "c".repeat(64)));
    fs::create_dir_all(stale.join("rootfs/usr")).unwrap();
    fs::set_permissions(stale.join("rootfs"), fs::Permissions::from_mode(0o500)).unwrap();
    image::unpack(&l.source(None), &f.cache()).unwrap();
    assert!(!stale.exists());
}

#[test]
fn device_nodes_are_made_as_root_and_skipped_with_a_note_otherwise() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(
        None,
        &[(Z::Plain, tar(&[E::CharDev("dev/null", 1, 3)]))],
        json!({}),
    );
    let img = image::unpack(&l.source(None), &f.cache()).unwrap();
    let node = img.rootfs.join("dev/null");
    if nix::unistd::geteuid().is_root() {
        let m = fs::symlink_metadata(&node).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), nix::sys::stat::makedev(1, 3));
    } else {
        assert!(!node.exists());
        assert!(
            img.notes.iter().any(|n| n.contains("dev/null")),
            "{:?}",
            img.notes
        );
    }
}

#[test]
fn the_cache_directory_is_private_unless_root() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(None, &[simple_layer("x")], json!({}));
    let cache = f.tmp.path().join("new/cache");
    image::unpack(&l.source(None), &cache).unwrap();
    let mode = fs::metadata(&cache).unwrap().mode() & 0o777;
    let want = if nix::unistd::geteuid().is_root() {
        0o755
    } else {
        0o700
    };
    // The umask may only take bits away.
    assert_eq!(mode & !want, 0, "{mode:o}");
    assert_eq!(mode & 0o700, 0o700);
}

#[test]
fn closed_directories_and_unreadable_files_unpack_check_and_remove() {
    let f = Fixture::new();
    let mut l = f.layout("img");
    l.image(
        None,
        &[
            (
                Z::Plain,
                tar(&[
                    E::Dir("ro/", 0o555),
                    E::File("ro/f", b"in a read-only dir", 0o444),
                    E::File("secret", b"mode 0", 0o000),
                    E::Dir("shut/", 0o000),
                    E::File("shut/inner", b"x", 0o644),
                ]),
            ),
            // A later layer still writes into the read-only directory.
            (Z::Plain, tar(&[E::File("ro/g", b"later", 0o644)])),
        ],
        json!({}),
    );
    let img = image::unpack(&l.source(None), &f.cache()).unwrap();
    let mode = |p: &str| fs::symlink_metadata(img.rootfs.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("ro"), 0o555);
    assert_eq!(mode("secret"), 0);
    assert_eq!(mode("shut"), 0);
    let checked = image::check(&f.cache()).unwrap();
    assert!(checked.iter().all(|(_, r)| r.is_ok()), "{checked:?}");
    assert_eq!(mode("shut"), 0, "check leaves modes as they were");
    image::remove(&f.cache(), &img.digest).unwrap();
    assert!(f.cache_names().is_empty(), "{:?}", f.cache_names());
}

/// Runs a tool tests/ci-install-images.sh installs; where it is missing the
/// test fails naming the package.
fn tool(name: &str, args: &[&str]) {
    let out = std::process::Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{name} does not run ({e}): install it with `apt-get install {name}` (tests/ci-install-images.sh)")
        });
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether some directory of PATH has `program`.
fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(program).is_file())
}

/// An OCI layout that umoci builds, tagged t1: two layers by umoci's own
/// diffing (the second deletes a file: a whiteout) and a run config.
/// (`umoci insert` of Debian's 0.4.7 writes layer tars without their end
/// blocks, which GNU tar refuses too: unpack and repack do it right.)
fn umoci_layout(f: &Fixture) -> PathBuf {
    let layout = f.tmp.path().join("umoci");
    let bundle = f.tmp.path().join("bundle");
    let umoci = |args: &[&str]| {
        let mut all = args.to_vec();
        if !nix::unistd::geteuid().is_root() && args[0] == "unpack" {
            all.insert(1, "--rootless");
        }
        tool("umoci", &all);
    };
    let image = format!("{}:t1", layout.display());
    let b = bundle.to_str().unwrap();
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, b]);
    fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    fs::write(bundle.join("rootfs/etc/greeting"), "hello from umoci\n").unwrap();
    fs::write(bundle.join("rootfs/gone"), "x").unwrap();
    umoci(&["repack", "--image", &image, b]);
    fs::remove_dir_all(&bundle).unwrap();
    umoci(&["unpack", "--image", &image, b]);
    fs::remove_file(bundle.join("rootfs/gone")).unwrap();
    umoci(&["repack", "--image", &image, b]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.env",
        "GREETING=hello",
        "--config.workingdir",
        "/etc",
        "--config.cmd",
        "cat",
    ]);
    layout
}

fn assert_umoci_image(img: &image::Image) {
    assert_eq!(
        fs::read_to_string(img.rootfs.join("etc/greeting")).unwrap(),
        "hello from umoci\n"
    );
    assert!(!img.rootfs.join("gone").exists());
    assert!(img
        .config
        .env
        .contains(&("GREETING".to_string(), "hello".to_string())));
    assert_eq!(img.config.working_dir.as_deref(), Some("/etc"));
    assert_eq!(img.config.cmd, ["cat"]);
}

#[test]
#[ignore = "needs umoci (tests/ci-install-images.sh)"]
fn a_layout_built_by_umoci_unpacks() {
    let f = Fixture::new();
    let layout = umoci_layout(&f);
    let src = image::parse_source(&format!("oci:{}:t1", layout.display()), Path::new("/"))
        .unwrap()
        .unwrap();
    let img = image::unpack(&src, &f.cache()).unwrap();
    assert_umoci_image(&img);
    let checked = image::check(&f.cache()).unwrap();
    assert!(checked.iter().all(|(_, r)| r.is_ok()), "{checked:?}");
}

#[test]
#[ignore = "needs umoci and skopeo (tests/ci-install-images.sh)"]
fn a_docker_archive_written_by_skopeo_unpacks() {
    let missing: Vec<&str> = ["umoci", "skopeo"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    assert!(
        missing.is_empty(),
        "a_docker_archive_written_by_skopeo_unpacks needs {}, not on PATH: install with \
         `apt-get install {}` (tests/ci-install-images.sh)",
        missing.join(" and "),
        missing.join(" ")
    );
    let f = Fixture::new();
    let layout = umoci_layout(&f);
    let archive = f.tmp.path().join("saved.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:t1", layout.display()),
            &format!("docker-archive:{}:test:latest", archive.display()),
        ],
    );
    let img = image::unpack(&Source::DockerArchive { file: archive }, &f.cache()).unwrap();
    assert_umoci_image(&img);
}
