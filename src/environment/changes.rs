//! What an `orrery env` command does to the environment, as pure functions: the packages it
//! names (checked here, at the boundary, since they end up in a build script), the spec it
//! leads to, the generation a rollback makes, and which old derived images go.

use std::collections::BTreeSet;

use crate::state::{EnvSpec, EnvironmentRecord, Generation};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A package or file name that cannot be used (named, with what is allowed).
    #[error("{0}")]
    Invalid(String),
    /// Removing something the environment does not hold.
    #[error("{0} (`orrery env list` shows what the environment holds)")]
    NotThere(String),
    /// A rollback that cannot be made, with why.
    #[error("{0}")]
    Rollback(String),
}

/// Packages a command names, by installer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packages {
    pub pip: Vec<String>,
    /// Requirements files: name → text (install), or names only with empty text (remove).
    pub requirements: Vec<(String, String)>,
    pub apt: Vec<String>,
    pub conda: Vec<String>,
}

impl Packages {
    pub fn is_empty(&self) -> bool {
        self.pip.is_empty()
            && self.requirements.is_empty()
            && self.apt.is_empty()
            && self.conda.is_empty()
    }

    /// The command line's words for them: `pyjokes -r course.txt --apt hello`.
    pub fn describe(&self) -> String {
        let mut words: Vec<String> = self.pip.clone();
        words.extend(self.requirements.iter().map(|(n, _)| format!("-r {n}")));
        words.extend(self.apt.iter().map(|p| format!("--apt {p}")));
        words.extend(self.conda.iter().map(|p| format!("--conda {p}")));
        words.join(" ")
    }

    /// Every name checked; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ChangeError> {
        if self.is_empty() {
            return Err(ChangeError::Invalid(
                "name at least one package: `orrery env install PKG…`, `-r requirements.txt`, \
                 `--apt PKG` or `--conda PKG`"
                    .into(),
            ));
        }
        self.pip.iter().try_for_each(|p| validate_pip(p))?;
        self.requirements
            .iter()
            .try_for_each(|(n, _)| validate_file_name(n))?;
        self.apt.iter().try_for_each(|p| validate_apt(p))?;
        self.conda.iter().try_for_each(|p| validate_conda(p))
    }
}

/// Up to 200 characters, starting with a letter or digit, then letters, digits and `extra`:
/// nothing a shell or an installer would read as an option or a second word.
fn is_word(spec: &str, extra: &str) -> bool {
    spec.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && spec.len() <= 200
        && spec
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

/// A pip requirement on the command line: a project name with extras and version
/// constraints (`numpy`, `pandas[excel]>=2,<3`); URLs, paths and options go in a `-r` file.
pub fn validate_pip(spec: &str) -> Result<(), ChangeError> {
    if is_word(spec, "._-[],<>=!~*+") {
        Ok(())
    } else {
        Err(ChangeError::Invalid(format!(
            "{spec:?} is not a pip requirement Orrery takes on the command line: use a project \
             name with optional extras and versions (e.g. `numpy`, `pandas[excel]>=2,<3`); put \
             URLs, paths and pip options in a requirements file and pass it with `-r FILE`"
        )))
    }
}

/// A Debian package name, optionally `=version` (Debian policy's characters).
pub fn validate_apt(spec: &str) -> Result<(), ChangeError> {
    let (name, version) = spec.split_once('=').unwrap_or((spec, ""));
    let name_ok = name.len() >= 2
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let version_ok = !spec.contains('=')
        || (!version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c)));
    if name_ok && version_ok {
        Ok(())
    } else {
        Err(ChangeError::Invalid(format!(
            "{spec:?} is not a Debian package name: lowercase letters, digits, '+', '-' and '.', \
             optionally `=VERSION` (e.g. `--apt graphviz`)"
        )))
    }
}

/// A conda package spec: a name, optionally a channel (`conda-forge::`) and version.
pub fn validate_conda(spec: &str) -> Result<(), ChangeError> {
    if is_word(spec, "._-=<>!*,:") {
        Ok(())
    } else {
        Err(ChangeError::Invalid(format!(
            "{spec:?} is not a conda package spec: a name with an optional channel and version \
             (e.g. `--conda conda-forge::r-base=4.3`)"
        )))
    }
}

/// A requirements file's name as recorded (its file name, not its path).
pub fn validate_file_name(name: &str) -> Result<(), ChangeError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ChangeError::Invalid(format!(
            "requirements file name {name:?}: use letters, digits, '.', '_' and '-' (rename the \
             file, e.g. `course-requirements.txt`)"
        )))
    }
}

/// A pip requirement's project, normalized as PyPI does (`Foo_bar[x]>=1` → `foo-bar`), so
/// installing `numpy==2` replaces `numpy` and `remove NumPy` finds it.
pub fn pip_project(spec: &str) -> String {
    let end = spec.find(['[', '<', '>', '=', '!', '~', ';', '@', ' ']);
    let name = &spec[..end.unwrap_or(spec.len())];
    let mut out = String::new();
    for c in name.chars() {
        let c = if "._-".contains(c) {
            '-'
        } else {
            c.to_ascii_lowercase()
        };
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out
}

/// A Debian or conda spec's package name (before `=`, after a `channel::`).
fn package_name(spec: &str) -> &str {
    let spec = spec.rsplit("::").next().unwrap_or(spec);
    spec.split(['=', '<', '>', '!']).next().unwrap_or(spec)
}

/// Replace `set`'s entries for the same package as `new` by `new`.
fn upsert(set: &mut BTreeSet<String>, new: &str, key: impl Fn(&str) -> String) {
    let k = key(new);
    set.retain(|old| key(old) != k);
    set.insert(new.to_string());
}

/// The spec after installing `packages` (a package already there takes the new constraint).
pub fn install(spec: &EnvSpec, packages: &Packages) -> EnvSpec {
    let mut next = spec.clone();
    for p in &packages.pip {
        upsert(&mut next.pip, p, pip_project);
    }
    for (name, text) in &packages.requirements {
        next.requirements.insert(name.clone(), text.clone());
    }
    for p in &packages.apt {
        upsert(&mut next.apt, p, |s| package_name(s).to_string());
    }
    for p in &packages.conda {
        upsert(&mut next.conda, p, |s| package_name(s).to_string());
    }
    next
}

/// The spec after removing `packages`; naming one the environment does not hold is an error
/// (so a typo never passes for a removal).
pub fn remove(spec: &EnvSpec, packages: &Packages) -> Result<EnvSpec, ChangeError> {
    let mut next = spec.clone();
    let take = |set: &mut BTreeSet<String>,
                wanted: &str,
                key: &dyn Fn(&str) -> String,
                what: &str|
     -> Result<(), ChangeError> {
        let k = key(wanted);
        let before = set.len();
        set.retain(|old| key(old) != k);
        if set.len() == before {
            Err(ChangeError::NotThere(format!(
                "{wanted} is not installed with {what} in the environment"
            )))
        } else {
            Ok(())
        }
    };
    for p in &packages.pip {
        take(&mut next.pip, p, &pip_project, "pip")?;
    }
    for (name, _) in &packages.requirements {
        if next.requirements.remove(name).is_none() {
            return Err(ChangeError::NotThere(format!(
                "no requirements file named {name} is in the environment"
            )));
        }
    }
    for p in &packages.apt {
        take(&mut next.apt, p, &|s| package_name(s).to_string(), "--apt")?;
    }
    for p in &packages.conda {
        take(
            &mut next.conda,
            p,
            &|s| package_name(s).to_string(),
            "--conda",
        )?;
    }
    Ok(next)
}

/// The generation `orrery env rollback [--to N]` makes: a copy of the target's spec and
/// images (nothing is built). Without `to`, the target is what the generation in effect
/// replaced, so repeated rollbacks keep walking back; with none left, the base images.
pub fn rollback(record: &EnvironmentRecord, to: Option<u64>) -> Result<Generation, ChangeError> {
    let current = record.current_generation().ok_or_else(|| {
        ChangeError::Rollback(
            "nothing to roll back: no software environment was installed yet".into(),
        )
    })?;
    let target = match to.or(current.previous) {
        Some(id) => Some(record.generation(id).ok_or_else(|| {
            ChangeError::Rollback(format!(
                "there is no generation {id} (`orrery env history` lists them)"
            ))
        })?),
        None => None,
    };
    let now = chrono::Utc::now();
    match target {
        Some(t) if t.id == current.id => Err(ChangeError::Rollback(format!(
            "generation {} is already in effect",
            t.id
        ))),
        Some(t) if t.pruned => Err(ChangeError::Rollback(format!(
            "generation {} can no longer be rolled back to: its images were removed (only the \
             last generations keep theirs, `user_environment.keep`); install what it held again",
            t.id
        ))),
        Some(t) => Ok(Generation {
            id: 0,
            created: now,
            change: format!("rollback to generation {}", t.id),
            previous: t.previous,
            spec: t.spec.clone(),
            images: t.images.clone(),
            pruned: false,
        }),
        None if current.spec.is_empty() && current.images.is_empty() => Err(ChangeError::Rollback(
            "nothing to roll back: the base images are in effect".into(),
        )),
        None => Ok(Generation {
            id: 0,
            created: now,
            change: "rollback to the base images".into(),
            previous: None,
            spec: EnvSpec::default(),
            images: Default::default(),
            pruned: false,
        }),
    }
}

/// Old derived images to remove: those of generations outside the last `keep` that neither
/// those nor the generation in effect use (rollbacks share images with what they copied). A
/// generation all of whose images are still used elsewhere keeps them, and can still be rolled
/// back to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prune {
    /// Generations that lose their images (marked pruned once their tags are gone).
    pub generations: Vec<u64>,
    /// Tags no kept generation uses.
    pub tags: Vec<String>,
}

pub fn prune(record: &EnvironmentRecord, keep: usize) -> Prune {
    let n = record.generations.len();
    let kept = |g: &Generation| g.id as usize + keep > n || Some(g.id) == record.current;
    let in_use: BTreeSet<&str> = record
        .generations
        .iter()
        .filter(|g| kept(g))
        .flat_map(|g| g.images.values().map(|d| d.tag.as_str()))
        .collect();
    let mut plan = Prune::default();
    let mut tags = BTreeSet::new();
    for g in record.generations.iter().filter(|g| !kept(g) && !g.pruned) {
        let going: Vec<&String> = g
            .images
            .values()
            .map(|d| &d.tag)
            .filter(|t| !in_use.contains(t.as_str()))
            .collect();
        if !going.is_empty() {
            plan.generations.push(g.id);
            tags.extend(going.into_iter().cloned());
        }
    }
    plan.tags = tags.into_iter().collect();
    plan
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::DerivedImage;

    fn pkgs(pip: &[&str], apt: &[&str]) -> Packages {
        Packages {
            pip: pip.iter().map(|s| s.to_string()).collect(),
            apt: apt.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn names_that_could_reach_a_shell_are_refused_with_what_is_allowed() {
        for ok in [
            "numpy",
            "pandas[excel]>=2,<3",
            "Foo_Bar==1.0.post1",
            "x~=1.2",
        ] {
            validate_pip(ok).unwrap();
        }
        for bad in [
            "",
            "-e .",
            "numpy; rm -rf /",
            "x'y",
            "https://evil/x.whl",
            "a b",
        ] {
            let e = validate_pip(bad).unwrap_err().to_string();
            assert!(e.contains("-r FILE"), "{bad}: {e}");
        }
        validate_apt("hello").unwrap();
        validate_apt("libc6=2.36-9+deb12u4").unwrap();
        for bad in ["Hello", "h", "hello;ls", "hello=", "x y", "-o"] {
            assert!(validate_apt(bad).is_err(), "{bad}");
        }
        validate_conda("conda-forge::r-base=4.3").unwrap();
        assert!(validate_conda("r base").is_err());
        validate_file_name("requirements.txt").unwrap();
        for bad in ["", "../x.txt", ".hidden", "a b.txt", "a/b"] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
        assert!(Packages::default().validate().is_err());
    }

    #[test]
    fn installs_replace_a_packages_constraint_and_removals_must_find_it() {
        assert_eq!(pip_project("Foo_bar.baz[x]>=1"), "foo-bar-baz");
        let one = install(
            &EnvSpec::default(),
            &pkgs(&["numpy", "pyjokes"], &["hello"]),
        );
        let two = install(&one, &pkgs(&["NumPy==2.1"], &["hello=2.10-3"]));
        assert_eq!(
            two.pip.iter().map(String::as_str).collect::<Vec<_>>(),
            ["NumPy==2.1", "pyjokes"]
        );
        assert_eq!(two.apt.iter().collect::<Vec<_>>(), ["hello=2.10-3"]);
        let three = remove(&two, &pkgs(&["numpy"], &["hello"])).unwrap();
        assert_eq!(three.pip.iter().collect::<Vec<_>>(), ["pyjokes"]);
        assert!(three.apt.is_empty());
        let e = remove(&three, &pkgs(&["numpyy"], &[])).unwrap_err();
        assert!(e.to_string().contains("numpyy is not installed"), "{e}");
        assert_eq!(
            pkgs(&["a"], &["b"]).describe(),
            "a --apt b",
            "history says what was typed"
        );
    }

    fn record(gens: &[(&str, Option<u64>, &str)], current: Option<u64>) -> EnvironmentRecord {
        EnvironmentRecord {
            generations: gens
                .iter()
                .enumerate()
                .map(|(i, (change, previous, tag))| Generation {
                    id: i as u64 + 1,
                    created: chrono::Utc::now(),
                    change: change.to_string(),
                    previous: *previous,
                    spec: install(&EnvSpec::default(), &pkgs(&[change], &[])),
                    images: BTreeMap::from([(
                        "base".to_string(),
                        DerivedImage {
                            tag: tag.to_string(),
                            id: String::new(),
                        },
                    )]),
                    pruned: false,
                })
                .collect(),
            current,
        }
    }

    #[test]
    fn rollbacks_walk_back_through_what_each_generation_replaced() {
        let mut r = record(&[("a", None, "t1"), ("b", Some(1), "t2")], Some(2));
        let back = rollback(&r, None).unwrap();
        assert_eq!(back.change, "rollback to generation 1");
        assert_eq!(
            (back.previous, back.images["base"].tag.as_str()),
            (None, "t1")
        );
        r.generations.push(Generation { id: 3, ..back });
        r.current = Some(3);
        // Again: nothing before generation 1, so the base images.
        let base = rollback(&r, None).unwrap();
        assert_eq!(base.change, "rollback to the base images");
        assert!(base.images.is_empty() && base.spec.is_empty());
        r.generations.push(Generation { id: 4, ..base });
        r.current = Some(4);
        let e = rollback(&r, None).unwrap_err().to_string();
        assert!(e.contains("base images are in effect"), "{e}");
        // Forward again by number, but not to a pruned one or one that does not exist.
        assert_eq!(rollback(&r, Some(2)).unwrap().images["base"].tag, "t2");
        r.generations[1].pruned = true;
        assert!(rollback(&r, Some(2))
            .unwrap_err()
            .to_string()
            .contains("removed"));
        assert!(rollback(&r, Some(9))
            .unwrap_err()
            .to_string()
            .contains("no generation 9"));
        let none = EnvironmentRecord::default();
        assert!(rollback(&none, None)
            .unwrap_err()
            .to_string()
            .contains("no software"));
    }

    #[test]
    fn pruning_keeps_the_last_generations_the_one_in_effect_and_shared_images() {
        let r = record(
            &[
                ("a", None, "t1"),
                ("b", Some(1), "t2"),
                ("c", Some(2), "t3"),
                ("d", Some(3), "t1"), // a rollback to 1 shares its image
                ("e", Some(4), "t5"),
            ],
            Some(5),
        );
        let plan = prune(&r, 2);
        assert_eq!(
            plan.generations,
            [2, 3],
            "generation 1's image is still used by generation 4: it can still be rolled back to"
        );
        assert_eq!(plan.tags, ["t2", "t3"]);
        // The generation in effect is kept wherever it is.
        let mut r2 = r.clone();
        r2.current = Some(2);
        assert_eq!(prune(&r2, 2).tags, ["t3"]);
        // Already pruned generations are not planned again.
        let mut r3 = r.clone();
        for g in r3.generations.iter_mut().skip(1).take(2) {
            g.pruned = true;
        }
        assert_eq!(prune(&r3, 2), Prune::default());
        assert_eq!(prune(&r, 5), Prune::default());
    }
}
