//! Core lists as `taskset`/cpuset write them: `3`, `2-5`, `2-5,7,9-10`.

/// A parsed core list: sorted, without duplicates, not empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

impl std::str::FromStr for CoreList {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse(s).map(CoreList)
    }
}

/// Parse a core list; the result is sorted and without duplicates.
pub fn parse(list: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("invalid core {s:?} in {list:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("descending range {part:?} in {list:?}"));
                }
                cores.extend(a..=b);
            }
            None => cores.push(num(part)?),
        }
    }
    if cores.is_empty() {
        return Err(format!("empty core list {list:?}"));
    }
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(parse("3"), Ok(vec![3]));
        assert_eq!(parse("2-5"), Ok(vec![2, 3, 4, 5]));
        assert_eq!(parse("9-10, 2,7,2"), Ok(vec![2, 7, 9, 10]));
        assert!(parse("5-2").is_err());
        assert!(parse("x").is_err());
        assert!(parse("").is_err());
    }
}
