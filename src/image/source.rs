//! Reading an OCI image layout or a docker archive into a `Plan`: what to
//! unpack, every part checked against the digest that names it.

use super::blob::{is_sha256_hex, sha256_hex, sha256_of, Blob};
use super::{host_arch, ImageConfig, ImageError, Source};
use crate::fsx::Context;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// An image ready to unpack: its key, how to run it and its layers.
#[derive(Debug)]
pub(crate) struct Plan {
    /// sha256 hex of the manifest (of the config for a docker archive).
    pub key: String,
    pub platform: String,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// The source as the user wrote it.
    pub source: String,
}

#[derive(Debug)]
pub(crate) struct Layer {
    pub blob: Blob,
    /// sha256 hex of the blob as stored, when the source gives it.
    pub digest: Option<String>,
    /// sha256 hex of the uncompressed tar (the config's diff_id).
    pub diff_id: Option<String>,
    pub compression: Compression,
    pub media_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    /// Told by the first bytes (docker archives say nothing).
    Sniff,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub(crate) fn resolve(source: &Source) -> Result<Plan, ImageError> {
    match source {
        Source::Layout { dir, tag } => layout(dir, tag.as_deref(), source),
        Source::DockerArchive { file } => docker_archive(file, source),
    }
}

// ---------------------------------------------------------------- OCI layout

fn layout(dir: &Path, tag: Option<&str>, source: &Source) -> Result<Plan, ImageError> {
    let marker = dir.join("oci-layout");
    let text = match std::fs::read(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::Corrupt {
                file: marker.display().to_string(),
                what: "missing: this is not an OCI image layout".into(),
            })
        }
        Err(e) => return Err(crate::fsx::PathError::new("read", &marker, e).into()),
    };
    let header: oci_spec::image::OciLayout =
        serde_json::from_slice(&text).map_err(|e| ImageError::Corrupt {
            file: marker.display().to_string(),
            what: format!("not an oci-layout file: {e}"),
        })?;
    if !header.image_layout_version().starts_with("1.") {
        return Err(ImageError::Corrupt {
            file: marker.display().to_string(),
            what: format!(
                "image layout version {} (packrun reads 1.x)",
                header.image_layout_version()
            ),
        });
    }
    let index_path = dir.join("index.json");
    let index_blob = Blob {
        len: std::fs::metadata(&index_path)
            .at("read", &index_path)?
            .len(),
        file: index_path.clone(),
        offset: 0,
        label: index_path.display().to_string(),
    };
    let index: ImageIndex = parse_json(&index_blob, &index_blob.read_verified(None)?)?;
    let label = index_path.display().to_string();
    let mut desc = select(&index, tag, &label)?;
    // Follow nested indexes (a multi-platform image under one tag).
    for _ in 0..4 {
        let media = desc.media_type().as_ref().to_string();
        if media != MediaType::ImageIndex.as_ref() && media != DOCKER_LIST {
            break;
        }
        let blob = layout_blob(dir, &desc)?;
        let nested: ImageIndex = parse_json(&blob, &blob.read_verified(digest_hex(&desc))?)?;
        desc = select(&nested, None, &blob.label)?;
    }
    let media = desc.media_type().as_ref();
    let blob = layout_blob(dir, &desc)?;
    if media != MediaType::ImageManifest.as_ref() && media != DOCKER_MANIFEST {
        return Err(ImageError::MediaType {
            file: blob.label,
            media_type: media.into(),
        });
    }
    let manifest: ImageManifest = parse_json(&blob, &blob.read_verified(digest_hex(&desc))?)?;
    let key = digest_hex(&desc).unwrap_or_default().to_string();

    let cdesc = manifest.config();
    let cblob = layout_blob(dir, cdesc)?;
    let cmedia = cdesc.media_type().as_ref();
    if cmedia != MediaType::ImageConfig.as_ref() && cmedia != DOCKER_CONFIG {
        return Err(ImageError::MediaType {
            file: cblob.label,
            media_type: cmedia.into(),
        });
    }
    let config: ImageConfiguration = parse_json(&cblob, &cblob.read_verified(digest_hex(cdesc))?)?;
    let diff_ids = diff_ids(&config, manifest.layers().len(), &cblob)?;

    let mut layers = Vec::new();
    for (d, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let blob = layout_blob(dir, d)?;
        let media_type = d.media_type().as_ref().to_string();
        let compression = match d.media_type() {
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Compression::None,
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                Compression::Gzip
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                Compression::Zstd
            }
            MediaType::Other(m) if m == DOCKER_LAYER => Compression::None,
            MediaType::Other(m) if m == DOCKER_LAYER_GZIP => Compression::Gzip,
            _ => {
                return Err(ImageError::MediaType {
                    file: blob.label,
                    media_type,
                })
            }
        };
        layers.push(Layer {
            digest: digest_hex(d).map(String::from),
            blob,
            diff_id: Some(diff_id),
            compression,
            media_type,
        });
    }
    Ok(Plan {
        key,
        platform: platform_of(&config, &label)?,
        config: run_config(&config),
        layers,
        source: source.to_string(),
    })
}

/// The descriptor `tag` names, or the only one, or the one for this machine.
fn select(index: &ImageIndex, tag: Option<&str>, file: &str) -> Result<Descriptor, ImageError> {
    let name = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    let all = index.manifests();
    let cands: Vec<&Descriptor> = match tag {
        Some(t) => all
            .iter()
            .filter(|d| name(d).as_deref() == Some(t))
            .collect(),
        None => all.iter().collect(),
    };
    if let Some(t) = tag {
        if cands.is_empty() {
            let mut tags: Vec<String> = all.iter().filter_map(name).collect();
            tags.sort();
            tags.dedup();
            return Err(ImageError::NoTag {
                file: file.into(),
                tag: t.into(),
                tags,
            });
        }
    }
    match cands.as_slice() {
        [] => {
            return Err(ImageError::Corrupt {
                file: file.into(),
                what: "lists no manifests".into(),
            })
        }
        [one] => return Ok((*one).clone()),
        _ => {}
    }
    // Several: one image for several platforms, or several images.
    let mut names: Vec<Option<String>> = cands.iter().map(|d| name(d)).collect();
    names.sort();
    names.dedup();
    let several_images = names.len() > 1 || cands.iter().any(|d| d.platform().is_none());
    if several_images {
        let choices = cands
            .iter()
            .map(|d| name(d).unwrap_or_else(|| format!("(untagged {})", d.digest())))
            .collect();
        return Err(ImageError::Ambiguous {
            file: file.into(),
            choices,
            how: "name one as oci:PATH:TAG",
        });
    }
    let wanted = super::host_platform();
    let host = host_arch();
    cands
        .iter()
        .find(|d| {
            d.platform().as_ref().is_some_and(|p| {
                p.os().to_string() == "linux" && p.architecture().to_string() == host
            })
        })
        .map(|d| (*d).clone())
        .ok_or_else(|| ImageError::Platform {
            file: file.into(),
            wanted,
            found: cands
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect(),
        })
}

/// The blob a descriptor points to, its size checked before it is read.
fn layout_blob(dir: &Path, d: &Descriptor) -> Result<Blob, ImageError> {
    let digest = d.digest().to_string();
    let Some(hex) = sha256_of(&digest) else {
        return Err(ImageError::Corrupt {
            file: dir.join("index.json").display().to_string(),
            what: format!("digest {digest}: packrun verifies sha256 digests only"),
        });
    };
    let file = dir.join("blobs/sha256").join(hex);
    let label = file.display().to_string();
    let meta = match std::fs::symlink_metadata(&file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::MissingBlob {
                file: label,
                digest,
            })
        }
        Err(e) => return Err(crate::fsx::PathError::new("read", &file, e).into()),
    };
    if !meta.is_file() {
        return Err(ImageError::Corrupt {
            file: label,
            what: "not a regular file".into(),
        });
    }
    let blob = Blob {
        file,
        offset: 0,
        len: d.size(),
        label,
    };
    blob.check_len(meta.len())?;
    Ok(blob)
}

fn digest_hex(d: &Descriptor) -> Option<&str> {
    let s: &str = d.digest().as_ref();
    sha256_of(s)
}

fn parse_json<T: for<'de> Deserialize<'de>>(blob: &Blob, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| blob.corrupt(format!("unreadable JSON: {e}")))
}

/// The config's diff_ids as hex, one per layer.
fn diff_ids(
    config: &ImageConfiguration,
    layers: usize,
    file: &Blob,
) -> Result<Vec<String>, ImageError> {
    let ids = config.rootfs().diff_ids();
    if ids.len() != layers {
        return Err(file.corrupt(format!(
            "rootfs.diff_ids lists {} layers, the manifest {layers}",
            ids.len()
        )));
    }
    ids.iter()
        .map(|id| {
            sha256_of(id)
                .map(String::from)
                .ok_or_else(|| file.corrupt(format!("diff_id {id} is not a sha256 digest")))
        })
        .collect()
}

/// `linux/amd64[/variant]`, which must be this machine's.
fn platform_of(config: &ImageConfiguration, file: &str) -> Result<String, ImageError> {
    let (os, arch) = (config.os().to_string(), config.architecture().to_string());
    let mut platform = format!("{os}/{arch}");
    if let Some(v) = config.variant() {
        platform = format!("{platform}/{v}");
    }
    if os != "linux" || arch != host_arch() {
        return Err(ImageError::Platform {
            file: file.into(),
            wanted: super::host_platform(),
            found: vec![platform],
        });
    }
    Ok(platform)
}

fn run_config(config: &ImageConfiguration) -> ImageConfig {
    let Some(c) = config.config() else {
        return ImageConfig::default();
    };
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    ImageConfig {
        env: c
            .env()
            .iter()
            .flatten()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect(),
        working_dir: nonempty(c.working_dir()),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        user: nonempty(c.user()),
    }
}

// ------------------------------------------------------------ docker archive

/// One entry of a docker archive's manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Where a member of the archive is.
struct Member {
    offset: u64,
    len: u64,
    /// A symlink's or hard link's target, as the archive gives it.
    link: Option<(bool, String)>,
}

fn docker_archive(file: &Path, source: &Source) -> Result<Plan, ImageError> {
    let members = archive_members(file)?;
    let label = |m: &str| format!("{} (member {m})", file.display());
    let blob = |name: &str| -> Result<Blob, ImageError> {
        let (real, m) = find_member(&members, name).ok_or_else(|| ImageError::Corrupt {
            file: label(name),
            what: "missing from the archive".into(),
        })?;
        Ok(Blob {
            file: file.to_path_buf(),
            offset: m.offset,
            len: m.len,
            label: label(&real),
        })
    };
    let mblob = blob("manifest.json")?;
    let images: Vec<ArchiveImage> = parse_json(&mblob, &mblob.read_verified(None)?)?;
    let image = match images.as_slice() {
        [one] => one,
        [] => return Err(mblob.corrupt("lists no images")),
        many => {
            return Err(ImageError::Ambiguous {
                file: mblob.label.clone(),
                choices: many
                    .iter()
                    .map(|i| {
                        i.repo_tags
                            .as_ref()
                            .map(|t| t.join(" "))
                            .unwrap_or_else(|| i.config.clone())
                    })
                    .collect(),
                how: "packrun takes an archive of one image (docker save IMAGE)",
            })
        }
    };
    let cblob = blob(&image.config)?;
    let bytes = cblob.read_verified(named_digest(&image.config))?;
    let key = sha256_hex(&bytes);
    let config: ImageConfiguration = parse_json(&cblob, &bytes)?;
    let diff_ids = diff_ids(&config, image.layers.len(), &cblob)?;
    let mut layers = Vec::new();
    for (name, diff_id) in image.layers.iter().zip(diff_ids) {
        layers.push(Layer {
            blob: blob(name)?,
            digest: named_digest(name).map(String::from),
            diff_id: Some(diff_id),
            compression: Compression::Sniff,
            media_type: "docker archive layer".into(),
        });
    }
    Ok(Plan {
        key,
        platform: platform_of(&config, &cblob.label)?,
        config: run_config(&config),
        layers,
        source: source.to_string(),
    })
}

/// The digest a member's name states: `blobs/sha256/<hex>` or `<hex>.json`.
fn named_digest(name: &str) -> Option<&str> {
    let base = name.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    let named = name.contains("sha256/") || base.ends_with(".json");
    (named && is_sha256_hex(hex)).then_some(hex)
}

fn archive_members(file: &Path) -> Result<HashMap<String, Member>, ImageError> {
    let mut f = File::open(file).at("open", file)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).at("read", file)?;
    if n >= 2 && magic[..2] == [0x1f, 0x8b] || n == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        return Err(ImageError::Corrupt {
            file: file.display().to_string(),
            what: "a compressed archive: packrun reads the plain tar `docker save` writes (decompress it first)".into(),
        });
    }
    let f = File::open(file).at("open", file)?;
    let bad = |e: std::io::Error| ImageError::Corrupt {
        file: file.display().to_string(),
        what: format!("not a readable tar archive: {e}"),
    };
    let mut archive = tar::Archive::new(f);
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = clean(&entry.path().map_err(bad)?);
        let kind = entry.header().entry_type();
        let link = if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name().map_err(bad)?.unwrap_or_default();
            Some((kind.is_symlink(), target.to_string_lossy().into_owned()))
        } else {
            None
        };
        members.insert(
            name,
            Member {
                offset: entry.raw_file_position(),
                len: entry.size(),
                link,
            },
        );
    }
    Ok(members)
}

/// A member by name, following links inside the archive (older `docker
/// save` writes repeated layers as symlinks to the first copy).
fn find_member<'a>(
    members: &'a HashMap<String, Member>,
    name: &str,
) -> Option<(String, &'a Member)> {
    let mut name = clean(Path::new(name));
    for _ in 0..8 {
        let m = members.get(&name)?;
        match &m.link {
            None => return Some((name, m)),
            Some((true, target)) => {
                let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                name = clean(&dir.join(target));
            }
            Some((false, target)) => name = clean(Path::new(target)),
        }
    }
    None
}

/// A member path without `./`, leading `/` or `..` above the top.
fn clean(p: &Path) -> String {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.iter()
        .collect::<PathBuf>()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_state_digests_only_in_content_addressed_forms() {
        let h = sha256_hex(b"x");
        assert_eq!(named_digest(&format!("blobs/sha256/{h}")), Some(h.as_str()));
        assert_eq!(named_digest(&format!("{h}.json")), Some(h.as_str()));
        assert_eq!(named_digest(&format!("{h}/layer.tar")), None);
        assert_eq!(named_digest("manifest.json"), None);
    }

    #[test]
    fn archive_member_paths_are_cleaned() {
        assert_eq!(clean(Path::new("./a/b/../c")), "a/c");
        assert_eq!(clean(Path::new("/../x")), "x");
    }
}
