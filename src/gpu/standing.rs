//! A user's standing for GPUs: the priority their waiting kernels get and how many units
//! they may hold, from the `[[gpu.groups]]` they belong to (the highest of each), else 0 and
//! `gpu.quota.per_user`. A pure function of the config and the user's groups.

use crate::config::Gpu;

/// What a user's GPU requests are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Queue order before the fewer-units rule: higher first.
    pub priority: i32,
    /// Units the user's kernels may hold together.
    pub quota: u32,
    /// Whether a `[[gpu.groups]]` entry set it (else the defaults apply).
    pub from_group: bool,
}

/// The standing of a member of `groups` (the names of all their groups).
pub fn of(gpu: &Gpu, groups: &[String]) -> Standing {
    let mine: Vec<_> = gpu
        .groups
        .iter()
        .filter(|g| groups.contains(&g.name))
        .collect();
    Standing {
        priority: mine.iter().map(|g| g.priority).max().unwrap_or(0),
        quota: mine
            .iter()
            .filter_map(|g| g.quota)
            .max()
            .unwrap_or(gpu.quota.per_user),
        from_group: !mine.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GpuGroup;

    fn gpu() -> Gpu {
        let mut g = Gpu::default();
        g.quota.per_user = 1;
        g.groups = vec![
            GpuGroup {
                name: "tas".into(),
                priority: 10,
                quota: Some(2),
            },
            GpuGroup {
                name: "thesis".into(),
                priority: 5,
                quota: Some(4),
            },
            GpuGroup {
                name: "late".into(),
                priority: -1,
                quota: None,
            },
        ];
        g
    }

    #[test]
    fn the_highest_priority_and_quota_of_the_users_groups() {
        let g = gpu();
        let s = |groups: &[&str]| {
            of(
                &g,
                &groups.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            s(&[]),
            Standing {
                priority: 0,
                quota: 1,
                from_group: false
            }
        );
        assert_eq!(
            s(&["class-a"]).quota,
            1,
            "a group without a [[gpu.groups]] entry"
        );
        assert_eq!((s(&["tas"]).priority, s(&["tas"]).quota), (10, 2));
        assert_eq!(
            (s(&["tas", "thesis"]).priority, s(&["tas", "thesis"]).quota),
            (10, 4)
        );
        // A group without its own quota keeps the default; a negative priority goes last.
        assert_eq!((s(&["late"]).priority, s(&["late"]).quota), (-1, 1));
        assert_eq!(s(&["late", "tas"]).priority, 10);
    }
}
