//! Derived images through the Docker engine: what a base image is, whether a derived image
//! exists, building one (its output handed line by line to the caller, for the terminal),
//! pushing it to a registry, removing it.

use std::collections::{HashMap, VecDeque};

use bollard::image::{BuildImageOptions, PushImageOptions, RemoveImageOptions};
use bollard::Docker;
use futures::StreamExt;

use super::recipe::{BaseImage, Recipe};
use crate::state::DerivedImage;

/// How many lines of a failed build step's output its error keeps (pip's and apt's own error
/// is in the last few).
const TAIL_LINES: usize = 12;

/// Proxy settings passed to the build (Docker's predefined build arguments), so `apt-get` and
/// `pip` reach the package registries the way this machine does.
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ftp_proxy",
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the image {0} is not on this machine: pull or build it first (docker pull {0}), or remove it from the config")]
    MissingBase(String),
    #[error("the Docker engine refused: {0}")]
    Engine(String),
    /// The build ran and failed: the engine's error and the end of the build's output.
    #[error("building the environment on {base} failed ({}):\n{}", short_error(error), tail.join("\n"))]
    Failed {
        base: String,
        error: String,
        tail: Vec<String>,
    },
    #[error("pushing {tag} failed: {error}. The registry (user_environment.registry) must accept pushes from this machine")]
    Push { tag: String, error: String },
}

/// The engine's error without the whole build script it quotes: `the command '/bin/sh -c …'
/// returned a non-zero code: 1` → `a build step exited with code 1`.
fn short_error(error: &str) -> String {
    match error.rsplit_once("returned a non-zero code: ") {
        Some((_, code)) => format!("a build step exited with code {}", code.trim()),
        None => error.to_string(),
    }
}

/// A line of build output as plain text: the classic builder colours a step's stderr with
/// terminal escapes, and progress bars redraw with carriage returns (the last state is kept).
fn plain(raw: &str) -> String {
    let raw = raw.trim_end_matches(['\n', '\r']);
    let raw = raw.rsplit('\r').next().unwrap_or(raw);
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte (@ to ~).
            if chars.peek() == Some(&'[') {
                chars.next();
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// Build output cut into lines (the engine sends chunks that need not end at line ends), and
/// the failing step's own last lines for the error.
#[derive(Default)]
struct Lines {
    partial: String,
    tail: VecDeque<String>,
}

impl Lines {
    fn push(&mut self, text: &str, out: &mut (dyn FnMut(&str) + Send)) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let raw: String = self.partial.drain(..=end).collect();
            self.line(plain(&raw), out);
        }
    }

    fn line(&mut self, l: String, out: &mut (dyn FnMut(&str) + Send)) {
        out(&l);
        // The tail restarts at each step, and leaves out the engine's bookkeeping lines.
        if l.starts_with("Step ") {
            self.tail.clear();
        } else if !l.is_empty()
            && !l.starts_with(" ---> ")
            && !l.starts_with("Removing intermediate container")
        {
            self.tail.push_back(l);
            if self.tail.len() > TAIL_LINES {
                self.tail.pop_front();
            }
        }
    }

    fn finish(mut self, out: &mut (dyn FnMut(&str) + Send)) -> Vec<String> {
        if !self.partial.is_empty() {
            let rest = plain(&std::mem::take(&mut self.partial));
            self.line(rest, out);
        }
        self.tail.into_iter().collect()
    }
}

/// The engine's word on a base image: its id and user.
pub async fn base_image(docker: &Docker, reference: &str) -> Result<BaseImage, BuildError> {
    let found = docker.inspect_image(reference).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => BuildError::MissingBase(reference.to_string()),
        e => BuildError::Engine(e.to_string()),
    })?;
    Ok(BaseImage {
        reference: reference.to_string(),
        id: found.id.unwrap_or_default(),
        user: found.config.and_then(|c| c.user).unwrap_or_default(),
    })
}

/// The id of the image `tag`, if the engine has it.
pub async fn existing(docker: &Docker, tag: &str) -> Option<String> {
    docker.inspect_image(tag).await.ok().and_then(|i| i.id)
}

/// Build `recipe` as `tag`, handing each line of output to `out`.
pub async fn build(
    docker: &Docker,
    recipe: &Recipe,
    tag: &str,
    out: &mut (dyn FnMut(&str) + Send),
) -> Result<DerivedImage, BuildError> {
    let context = recipe
        .context()
        .map_err(|e| BuildError::Engine(format!("cannot make the build context: {e}")))?;
    let buildargs: HashMap<String, String> = PROXY_VARS
        .iter()
        .filter_map(|v| std::env::var(v).ok().map(|val| (v.to_string(), val)))
        .collect();
    let labels = HashMap::from([
        ("org.orrery.env.base".to_string(), recipe.base.clone()),
        ("org.orrery.env.hash".to_string(), recipe.hash()),
    ]);
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_string(),
        t: tag.to_string(),
        rm: true,
        forcerm: true,
        pull: false,
        buildargs,
        labels,
        ..Default::default()
    };
    let mut lines = Lines::default();
    let mut stream = docker.build_image(options, None, Some(context.into()));
    let mut failure: Option<String> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.stream.as_deref().or(info.status.as_deref()) {
                    lines.push(s, out);
                }
                if let Some(e) = info.error {
                    failure = Some(e);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => failure = Some(error),
            Err(e) => failure = Some(e.to_string()),
        }
        if failure.is_some() {
            break;
        }
    }
    let tail = lines.finish(out);
    if let Some(error) = failure {
        return Err(BuildError::Failed {
            base: recipe.base.clone(),
            error,
            tail,
        });
    }
    match existing(docker, tag).await {
        Some(id) => Ok(DerivedImage {
            tag: tag.to_string(),
            id,
        }),
        None => Err(BuildError::Failed {
            base: recipe.base.clone(),
            error: format!("the engine reported no error but has no image {tag}"),
            tail,
        }),
    }
}

/// Push `tag` to its registry (the Kubernetes backend pulls from there).
pub async fn push(
    docker: &Docker,
    tag: &str,
    out: &mut (dyn FnMut(&str) + Send),
) -> Result<(), BuildError> {
    let (name, version) = match tag.rsplit_once(':') {
        Some((n, v)) if !v.contains('/') => (n, v),
        _ => (tag, "latest"),
    };
    let mut stream = docker.push_image(name, Some(PushImageOptions { tag: version }), None);
    while let Some(item) = stream.next().await {
        let failed = |error: String| BuildError::Push {
            tag: tag.to_string(),
            error,
        };
        match item {
            Ok(info) => {
                if let Some(e) = info.error {
                    return Err(failed(e));
                }
                if let Some(s) = info.status {
                    out(&s);
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => return Err(failed(error)),
            Err(e) => return Err(failed(e.to_string())),
        }
    }
    Ok(())
}

/// Remove the image `tag` (without force: an image a container still uses stays, and the
/// engine's refusal is the error).
pub async fn remove(docker: &Docker, tag: &str) -> Result<(), String> {
    match docker
        .remove_image(tag, Some(RemoveImageOptions::default()), None)
        .await
    {
        Ok(_)
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn build_output_loses_colours_and_redrawn_progress() {
        assert_eq!(
            plain("\u{1b}[91mERROR: No matching distribution found for x\n"),
            "ERROR: No matching distribution found for x"
        );
        assert_eq!(plain("\u{1b}[0m\u{1b}[91m\r\n"), "");
        assert_eq!(plain("10%\r50%\r100%\n"), "100%");
        assert_eq!(plain("\tindented  \n"), "\tindented");
        assert_eq!(
            super::short_error(
                "The command '/bin/sh -c pip install x' returned a non-zero code: 1"
            ),
            "a build step exited with code 1"
        );
    }
}
