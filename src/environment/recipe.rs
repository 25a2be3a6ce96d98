//! The Dockerfile and build context that derive one base image's environment, and the content
//! hash that names the result. The build starts from the base image's id (not its tag, which
//! may move), installs as root — Debian packages, then conda, then pip — and ends as the
//! base's own user, so what runs is what ran before plus the packages, readable by that user
//! (the build's umask leaves installed files world-readable).
//!
//! Every name in the script passed [`super::changes`]' checks, and each is single-quoted.

use sha2::{Digest, Sha256};

use crate::state::EnvSpec;

/// Where requirements files go in the build context and in the image during the build.
const REQUIREMENTS_DIR: &str = "requirements";
const IN_IMAGE: &str = "/tmp/orrery-env";

/// One base image's build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The base as the config names it.
    pub base: String,
    pub dockerfile: String,
    /// Context files besides the Dockerfile: path → content.
    pub files: Vec<(String, Vec<u8>)>,
}

/// What the engine says of a base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    pub reference: String,
    /// `sha256:…`
    pub id: String,
    /// Its `USER` (`1000:100`, `jovyan`); empty: root.
    pub user: String,
}

fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Recipe {
    /// The recipe deriving `spec` from `base`, installing with `python -m pip`.
    pub fn new(base: &BaseImage, spec: &EnvSpec, python: &str) -> Recipe {
        let mut d = format!(
            "# Made by `orrery env` from {}\nFROM {}\nUSER root\n",
            base.reference.replace('\n', " "),
            base.id
        );
        if !spec.apt.is_empty() {
            let pkgs: Vec<String> = spec.apt.iter().map(|p| quote(p)).collect();
            d.push_str(&format!(
                "RUN set -eu; export DEBIAN_FRONTEND=noninteractive; apt-get update; \
                 apt-get install -y --no-install-recommends {}; apt-get clean; \
                 rm -rf /var/lib/apt/lists/*\n",
                pkgs.join(" ")
            ));
        }
        if !spec.conda.is_empty() {
            let pkgs: Vec<String> = spec.conda.iter().map(|p| quote(p)).collect();
            d.push_str(&format!(
                "RUN set -eu; if ! command -v conda >/dev/null; then echo 'orrery env: this \
                 image has no conda; install these with pip (orrery env install) instead' >&2; \
                 exit 1; fi; conda install -y -n base {}; conda clean -afy\n",
                pkgs.join(" ")
            ));
        }
        let mut files = Vec::new();
        if !spec.pip.is_empty() || !spec.requirements.is_empty() {
            let mut args: Vec<String> = spec.pip.iter().map(|p| quote(p)).collect();
            for (name, text) in &spec.requirements {
                files.push((
                    format!("{REQUIREMENTS_DIR}/{name}"),
                    text.as_bytes().to_vec(),
                ));
                args.push("-r".into());
                args.push(quote(&format!("{IN_IMAGE}/{name}")));
            }
            if !files.is_empty() {
                d.push_str(&format!("COPY {REQUIREMENTS_DIR}/ {IN_IMAGE}/\n"));
            }
            d.push_str(&format!(
                "RUN set -eu; export PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1 \
                 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off; {} -m pip install {}; \
                 rm -rf {IN_IMAGE}\n",
                quote(python),
                args.join(" ")
            ));
        }
        if !base.user.is_empty() {
            d.push_str(&format!("USER {}\n", base.user));
        }
        Recipe {
            base: base.reference.clone(),
            dockerfile: d,
            files,
        }
    }

    /// sha256 of everything that goes into the build (the base's id is in the Dockerfile),
    /// 16 hex digits: the same environment on the same base is never built twice.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"Dockerfile\0");
        h.update(self.dockerfile.as_bytes());
        for (path, content) in &self.files {
            h.update(b"\0");
            h.update(path.as_bytes());
            h.update(b"\0");
            h.update(content);
        }
        hex::encode(h.finalize())[..16].to_string()
    }

    /// The derived image's reference: `[REGISTRY/]orrery-env:<base, made a tag>-<hash>`, so
    /// `docker images` shows what each came from.
    pub fn tag(&self, registry: &str) -> String {
        let mut slug: String = self
            .base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        slug.truncate(100);
        let slug = slug.trim_matches(['-', '.']);
        let repo = match registry.trim_end_matches('/') {
            "" => crate::docker::DERIVED_REPOSITORY.to_string(),
            r => format!("{r}/{}", crate::docker::DERIVED_REPOSITORY),
        };
        format!("{repo}:{slug}-{}", self.hash())
    }

    /// The build context: a tar of the Dockerfile and the files.
    pub fn context(&self) -> std::io::Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |path: &str, content: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, path, content)
        };
        add("Dockerfile", self.dockerfile.as_bytes())?;
        for (path, content) in &self.files {
            add(path, content)?;
        }
        tar.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::changes::{install, Packages};

    fn base() -> BaseImage {
        BaseImage {
            reference: "quay.io/jupyter/base-notebook:latest".into(),
            id: "sha256:abc".into(),
            user: "1000:100".into(),
        }
    }

    #[test]
    fn the_script_installs_as_root_and_ends_as_the_bases_user() {
        let spec = install(
            &Default::default(),
            &Packages {
                pip: vec!["pyjokes".into()],
                requirements: vec![("course.txt".into(), "numpy\n".into())],
                apt: vec!["hello".into()],
                conda: vec![],
            },
        );
        let r = Recipe::new(&base(), &spec, "python3");
        let lines: Vec<&str> = r.dockerfile.lines().collect();
        assert_eq!(
            lines[1], "FROM sha256:abc",
            "built from the id, not a tag that moves"
        );
        assert_eq!(lines[2], "USER root");
        assert!(lines[3].contains("apt-get install -y --no-install-recommends 'hello'"));
        assert!(lines[3].contains("rm -rf /var/lib/apt/lists/*"));
        assert_eq!(lines[4], "COPY requirements/ /tmp/orrery-env/");
        assert!(
            lines[5].contains("'python3' -m pip install 'pyjokes' -r '/tmp/orrery-env/course.txt'"),
            "{}",
            lines[5]
        );
        assert_eq!(*lines.last().unwrap(), "USER 1000:100");
        assert!(!r.dockerfile.contains("conda"));
        assert_eq!(
            r.files,
            [("requirements/course.txt".to_string(), b"numpy\n".to_vec())]
        );
        // The context is a tar holding exactly the Dockerfile and the file.
        let ctx = r.context().unwrap();
        let mut archive = tar::Archive::new(ctx.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "requirements/course.txt"]);
    }

    #[test]
    fn the_tag_names_the_base_and_changes_with_anything_that_goes_in() {
        let spec = install(
            &Default::default(),
            &Packages {
                pip: vec!["pyjokes".into()],
                ..Default::default()
            },
        );
        let r = Recipe::new(&base(), &spec, "python3");
        let tag = r.tag("");
        assert!(
            tag.starts_with("orrery-env:quay.io-jupyter-base-notebook-latest-"),
            "{tag}"
        );
        assert_eq!(
            tag,
            Recipe::new(&base(), &spec, "python3").tag(""),
            "stable"
        );
        assert!(crate::docker::is_local_derived(&tag));
        let pushed = r.tag("registry.example:5000/");
        assert!(
            pushed.starts_with("registry.example:5000/orrery-env:"),
            "{pushed}"
        );
        assert!(
            !crate::docker::is_local_derived(&pushed),
            "pulled from its registry"
        );
        let other_base = BaseImage {
            id: "sha256:def".into(),
            ..base()
        };
        let more = install(
            &spec,
            &Packages {
                apt: vec!["hello".into()],
                ..Default::default()
            },
        );
        let mut file = install(
            &spec,
            &Packages {
                requirements: vec![("r.txt".into(), "a\n".into())],
                ..Default::default()
            },
        );
        let mut tags = vec![
            tag.clone(),
            Recipe::new(&other_base, &spec, "python3").tag(""),
            Recipe::new(&base(), &more, "python3").tag(""),
            Recipe::new(&base(), &spec, "/opt/conda/bin/python").tag(""),
            Recipe::new(&base(), &file, "python3").tag(""),
        ];
        file.requirements.insert("r.txt".into(), "b\n".into());
        tags.push(Recipe::new(&base(), &file, "python3").tag(""));
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len(), "{tags:#?}");
    }

    #[test]
    fn conda_is_asked_for_only_when_named_and_says_when_missing() {
        let spec = install(
            &Default::default(),
            &Packages {
                conda: vec!["conda-forge::r-base".into()],
                ..Default::default()
            },
        );
        let d = Recipe::new(&base(), &spec, "python3").dockerfile;
        assert!(d.contains("conda install -y -n base 'conda-forge::r-base'"));
        assert!(d.contains("this image has no conda"));
        assert!(!d.contains("pip install"));
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
