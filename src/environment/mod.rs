//! The software environment admins install into for everyone (`orrery env`). Containers lose
//! what a user installs in them on restart, so a change is made once, for all: each
//! `orrery env install/remove` builds, from every base image in use, a derived image holding
//! the whole environment, tagged by the hash of what went into it, and records the result as
//! a new *generation* in the state. New servers and kernels get the derived image of their
//! base; running ones keep theirs until restarted. A failed build records nothing.
//!
//! * [`changes`]: what a command does to the environment's spec and history (pure).
//! * [`recipe`]: the Dockerfile and build context for one base, and its content hash (pure).
//! * [`build`]: building, finding and removing derived images through the Docker engine.

pub mod build;
pub mod changes;
pub mod recipe;

use crate::config::Config;

/// Every base image new servers or kernels may be created from, each once, in a stable order:
/// the default server image, the images users may choose, every profile's and every kernel
/// spec's image.
pub fn bases_in_use(cfg: &Config) -> Vec<String> {
    let docker = &cfg.spawner.docker;
    let mut bases: Vec<String> = Vec::new();
    let candidates = std::iter::once(&docker.image)
        .chain(&docker.allowed_images)
        .chain(cfg.profiles.iter().map(|p| &p.image))
        .chain(cfg.kernels.specs.iter().map(|s| &s.image));
    for image in candidates {
        if !image.is_empty() && !bases.contains(image) {
            bases.push(image.clone());
        }
    }
    bases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_every_configured_image_once() {
        let cfg: Config = toml::from_str(
            "[spawner.docker]\nimage = \"a:1\"\nallowed_images = [\"b:1\", \"a:1\"]\n\n\
             [[profiles]]\nname = \"big\"\ndisplay_name = \"Big\"\nimage = \"c:1\"\n\n\
             [[profiles]]\nname = \"small\"\ndisplay_name = \"Small\"\n\n\
             [[kernels.specs]]\nname = \"r\"\ndisplay_name = \"R\"\nimage = \"d:1\"\nargv = [\"R\"]\n",
        )
        .unwrap();
        assert_eq!(bases_in_use(&cfg), ["a:1", "b:1", "c:1", "d:1"]);
    }
}
